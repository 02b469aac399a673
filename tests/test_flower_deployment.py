"""A real local deployment: one ``flower-superlink`` and three ``flower-supernode`` processes on
127.0.0.1 (insecure), the app submitted with ``flwr run``. One SuperNode is killed (SIGKILL,
with its ClientApp) as soon as it has received its round-2 training message; round 2 must
still aggregate the other two clients (``min-replies=2``), the run must finish and write its
results, and every process this test started must be gone afterwards. A second test stops
the ServerApp (``flwr stop``) during round 2 and resumes it as a new run. Slow: ≈2 min each."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr")

import torch  # noqa: E402
from flower_helpers import smoke_overrides  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fedmllm.build import build_components, make_simulator  # noqa: E402
from fedmllm.configs import CONFIG_DIR as CONFIGS  # noqa: E402
from fedmllm.deploy.flower.__main__ import APP_DIR  # noqa: E402
from fedmllm.deploy.flower.config import compose_config  # noqa: E402
from fedmllm.deploy.flower.server_app import GLOBAL_ADAPTER  # noqa: E402

BIN = Path(sys.executable).parent
CLIENTS = ("vqa", "report", "detection")  # partition order of fedmed_synth
VICTIM = 2  # the detection client's SuperNode
TRAIN_MSG = "Receiving: train message"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (BIN / "flower-superlink").exists(), reason="flwr executables not installed"
    ),
]


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        time.sleep(poll)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, state, start time) of every process, read from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        table[int(stat.parent.name)] = (int(fields[1]), fields[0], int(fields[19]))
    return table


def descendants(roots: set[int]) -> dict[int, int]:
    """``roots`` and every process below them, as pid -> start time (Flower starts its
    SuperExec, ServerApp and ClientApp processes in sessions of their own, so process groups
    do not cover them)."""
    table = _proc_table()
    found: set[int] = set()
    frontier = {r for r in roots if r in table}
    while frontier:
        found |= frontier
        frontier = {p for p, (ppid, _, _) in table.items() if ppid in frontier} - found
    return {p: table[p][2] for p in found}


def alive(seen: dict[int, int]) -> list[int]:
    """The processes of ``seen`` still running (same pid *and* start time: a reused pid is
    someone else's process; zombies have ended)."""
    table = _proc_table()
    return sorted(
        p for p, start in seen.items() if p in table and table[p][2] == start and table[p][1] != "Z"
    )


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


class Processes:
    """Processes started in their own process groups, each logging to a file."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.procs = env, log_dir, {}
        self.seen: dict[int, int] = {}  # pid -> start time of every process below ours

    def watch(self) -> None:
        """Remember the processes now running below the ones started here."""
        self.seen.update(descendants({p.pid for p in self.procs.values()}))

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # its own group: the ClientApp children die with it
        )
        return self.procs[name]

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(proc.pid, sig)

    def stop_all(self) -> None:
        for name in self.procs:
            self.kill(name, signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill(name)
                proc.wait(timeout=10)
            # children that outlived their parent's SIGTERM
            if group_members(proc.pid):
                self.kill(name)


class Federation:
    """One SuperLink and three SuperNodes on free ports of 127.0.0.1, and ``flwr run``."""

    def __init__(self, cache_dir: Path, tmp_path: Path) -> None:
        self.cache_dir, self.tmp_path = cache_dir, tmp_path
        self.link_port, *self.node_ports = free_ports(4)
        home = tmp_path / "flwr_home"
        home.mkdir()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "127.0.0.1:{self.link_port}"\ninsecure = true\n'
        )
        self.env = {
            **os.environ,
            "FLWR_HOME": str(home),
            "FLWR_TELEMETRY_ENABLED": "0",
            # The SuperExecs start `flwr-serverapp` / `flwr-clientapp` found on PATH: they must
            # be this environment's (where fedmllm is installed), not another Python's Flower.
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.procs = Processes(self.env, tmp_path)

    def start(self) -> None:
        self.procs.start(
            "superlink",
            "flower-superlink",
            "--insecure",
            "--host=127.0.0.1",
            f"--port={self.link_port}",
            "--disable-runtime-dependency-installation",
        )
        wait_for(lambda: listening(self.link_port), 60, "the SuperLink did not listen")
        for i, port in enumerate(self.node_ports):
            state = self.tmp_path / "nodes"
            node_config = f'partition-id={i} state-dir="{state}" data-dir="{self.cache_dir}"'
            self.procs.start(
                f"node{i}",
                "flower-supernode",
                "--insecure",
                f"--superlink=127.0.0.1:{self.link_port}",
                f"--port={port}",
                f"--node-config={node_config}",
            )

    def flwr(self, *args: str) -> str:
        """Run the ``flwr`` CLI against the local SuperLink; its output."""
        done = subprocess.run(
            [str(BIN / "flwr"), *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def submit(self, overrides: list[str], options: str) -> int:
        """``flwr run`` the app with ``overrides`` and run-config ``options``; the run id."""
        run_config = (
            f"overrides={json.dumps(shlex.join(overrides))} config-dir={json.dumps(str(CONFIGS))} "
            + options
        )
        out = self.flwr("run", str(APP_DIR), "local", "--run-config", run_config)
        found = re.search(r"started run (\d+)", out)
        assert found, out
        return int(found.group(1))

    def wait_for_results(self, run_dir: Path, what: str, timeout: float = 300) -> None:
        """Wait for ``run_dir/results.json``, noting every process that runs meanwhile."""

        def finished() -> bool:
            self.procs.watch()
            return (run_dir / "results.json").exists()

        wait_for(finished, timeout, what)

    def train_messages(self, node: int) -> int:
        return self.procs.log(f"node{node}").count(TRAIN_MSG)

    def shut_down(self) -> list[int]:
        """Stop everything; the processes that had to be killed after the bound."""
        self.procs.watch()
        self.procs.stop_all()
        # SIGTERM to our processes must take everything below them down, within a bound.
        with contextlib.suppress(TimeoutError):  # asserted by the caller
            wait_for(lambda: not alive(self.procs.seen), 30, "processes outlived the shutdown")
        stray = alive(self.procs.seen)
        for pid in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return stray

    def assert_nothing_left(self, stray: list[int]) -> None:
        procs = self.procs
        assert len(procs.seen) > len(procs.procs)  # SuperExecs, ServerApp, ClientApps were seen
        assert stray == [], f"stray processes after shutdown: {stray}"
        for name, proc in procs.procs.items():
            assert proc.poll() is not None, f"{name} (pid {proc.pid}) still running"
            assert group_members(proc.pid) == [], f"{name}'s group still has processes"


def deploy_overrides(experiment: str, cache_dir: Path, tmp_path: Path, out: Path, rounds: int):
    extra = ("threads=1", f"federation.rounds={rounds}", "federation.eval_every=0")
    return smoke_overrides(experiment, cache_dir, tmp_path, *extra, output_dir=out)


def test_superlink_and_three_supernodes_survive_a_node_killed_in_round_2(cache_dir, tmp_path):
    fed = Federation(cache_dir, tmp_path)
    out = tmp_path / "run"
    t0 = time.monotonic()
    try:
        fed.start()
        fed.submit(
            deploy_overrides("fedmed_fedavg", cache_dir, tmp_path, out, rounds=2),
            "min-replies=2 round-timeout=60.0 eval-timeout=60.0 node-wait=120.0",
        )
        # Kill the victim once its round-2 training message has reached it.
        wait_for(lambda: fed.train_messages(VICTIM) >= 2, 240, "no round-2 message")
        fed.procs.watch()  # the victim's ClientApp included
        fed.procs.kill(f"node{VICTIM}")
        killed_at = time.monotonic() - t0
        fed.wait_for_results(out, "the run did not finish")
    finally:
        stray = fed.shut_down()
    elapsed = time.monotonic() - t0
    print(f"deployment test: victim killed at {killed_at:.1f} s, all done in {elapsed:.1f} s")

    results = json.loads((out / "results.json").read_text())
    rounds = [h for h in results["history"] if "aggregated" in h]
    assert [h["round"] for h in rounds] == [1, 2]
    assert rounds[0]["aggregated"] == list(CLIENTS)
    assert rounds[1]["aggregated"] == ["vqa", "report"]  # completed with the two survivors
    assert set(rounds[1]["failed"]) == {"detection"}
    assert results["deploy"]["mode"] == "deployment"
    assert set(results["clients"]) == {"vqa", "report"}  # the dead node was not scored
    # Nothing this test started, nor anything they started, is still running.
    fed.assert_nothing_left(stray)


def test_a_run_stopped_in_round_2_resumes_to_the_simulators_result(cache_dir, tmp_path):
    """``flwr stop`` ends the ServerApp while round 2 trains; a new run with ``resume-from``
    finishes the federation, with the nodes' state of the first run, and the global adapter is
    the in-process simulator's, bit for bit (SCAFFOLD: state on the server and on the nodes)."""
    fed = Federation(cache_dir, tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    overrides = deploy_overrides("fedmed_scaffold", cache_dir, tmp_path, first, rounds=3)
    t0 = time.monotonic()
    try:
        fed.start()
        options = "min-replies=3 round-timeout=120.0 node-wait=120.0"
        run_id = fed.submit(overrides, options)
        wait_for(lambda: fed.train_messages(0) >= 2, 240, "no round-2 message")
        fed.procs.watch()
        fed.flwr("stop", str(run_id), "local")
        stopped_at = time.monotonic() - t0
        overrides[-1] = f"paths.output_dir={second}"
        fed.submit(overrides, f"{options} resume-from={json.dumps(str(first))}")
        fed.wait_for_results(second, "the resumed run did not finish")
    finally:
        stray = fed.shut_down()
    elapsed = time.monotonic() - t0
    print(f"resume test: stopped at {stopped_at:.1f} s, all done in {elapsed:.1f} s")

    assert not (first / "results.json").exists()  # the first run really was cut short
    results = json.loads((second / "results.json").read_text())
    assert results["resumed_from"] == str(first)
    assert [h["round"] for h in results["history"] if "aggregated" in h] == [1, 2, 3]
    assert [p.name for p in (tmp_path / "nodes").iterdir()] == [f"run_{run_id}"]
    sim_dir = tmp_path / "sim"
    cfg = compose_config(deploy_overrides("fedmed_scaffold", cache_dir, tmp_path, sim_dir, 3))
    c = build_components(cfg)
    sim, _ = make_simulator(cfg, c, sim_dir)
    sim.fit()
    flower_global = load_file(second / GLOBAL_ADAPTER)
    assert set(flower_global) == set(sim.global_state)
    for k, v in sim.global_state.items():
        assert torch.equal(flower_global[k], v), k
    assert results["comm"] == dict(sim.comm)
    fed.assert_nothing_left(stray)
