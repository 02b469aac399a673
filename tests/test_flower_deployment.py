"""A real local deployment: one ``flower-superlink`` and three ``flower-supernode`` processes on
127.0.0.1 (insecure), the app submitted with ``flwr run``. One SuperNode is killed (SIGKILL,
with its ClientApp) as soon as it has received its round-2 training message; round 2 must
still aggregate the other two clients (``min-replies=2``), the run must finish and write its
results, and every process this test started must be gone afterwards. Slow: ≈1–2 min."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from fedmllm.deploy.flower.__main__ import APP_DIR  # noqa: E402

BIN = Path(sys.executable).parent
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
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


def test_superlink_and_three_supernodes_survive_a_node_killed_in_round_2(cache_dir, tmp_path):
    link_port, *node_ports = free_ports(4)
    home = tmp_path / "flwr_home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
        f'address = "127.0.0.1:{link_port}"\ninsecure = true\n'
    )
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        # The SuperExecs start `flwr-serverapp` / `flwr-clientapp` found on PATH: they must be
        # this environment's (where fedmllm is installed), not another Python's Flower.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    procs = Processes(env, tmp_path)
    out = tmp_path / "run"
    t0 = time.monotonic()
    try:
        procs.start(
            "superlink",
            "flower-superlink",
            "--insecure",
            "--host=127.0.0.1",
            f"--port={link_port}",
            "--disable-runtime-dependency-installation",
        )
        wait_for(lambda: listening(link_port), 60, "the SuperLink did not listen")
        for i, port in enumerate(node_ports):
            node_config = (
                f'partition-id={i} state-dir="{tmp_path / "nodes"}" data-dir="{cache_dir}"'
            )
            procs.start(
                f"node{i}",
                "flower-supernode",
                "--insecure",
                f"--superlink=127.0.0.1:{link_port}",
                f"--port={port}",
                f"--node-config={node_config}",
            )
        overrides = [
            "experiment=fedmed_fedavg",
            "debug=smoke",
            "threads=1",
            "federation.rounds=2",
            "federation.eval_every=0",
            f"paths.data_dir={cache_dir}",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.output_dir={out}",
        ]
        run_config = (
            f"overrides={json.dumps(shlex.join(overrides))} config-dir={json.dumps(str(CONFIGS))} "
            "min-replies=2 round-timeout=60.0 eval-timeout=60.0 node-wait=120.0"
        )
        submitted = subprocess.run(
            [str(BIN / "flwr"), "run", str(APP_DIR), "local", "--run-config", run_config],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        # Kill the victim once its round-2 training message has reached it.
        victim = f"node{VICTIM}"
        wait_for(lambda: procs.log(victim).count(TRAIN_MSG) >= 2, 240, "no round-2 message")
        procs.watch()  # the victim's ClientApp included
        procs.kill(victim)
        killed_at = time.monotonic() - t0

        def finished() -> bool:
            procs.watch()
            return (out / "results.json").exists()

        wait_for(finished, 300, "the run did not finish")
    finally:
        procs.watch()
        procs.stop_all()
        # SIGTERM to our processes must take everything below them down, within a bound.
        with contextlib.suppress(TimeoutError):  # asserted below, after killing leftovers
            wait_for(lambda: not alive(procs.seen), 30, "processes outlived the shutdown")
        stray = alive(procs.seen)
        for pid in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
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
    assert len(procs.seen) > len(procs.procs)  # the SuperExecs, ServerApp, ClientApps were seen
    assert stray == [], f"stray processes after shutdown: {stray}"
    for name, proc in procs.procs.items():
        assert proc.poll() is not None, f"{name} (pid {proc.pid}) still running"
        assert group_members(proc.pid) == [], f"{name}'s group still has processes"
