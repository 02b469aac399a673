"""Every experiment of ``fedmllm/configs/experiment/`` through the Flower apps (in-process grid, the
node runtime rebuilt for every message as in a deployment) against the simulator.

Each federated experiment must end with the simulator's global adapter bit for bit (the same
code on the same seeded inputs; see ``test_flower_simulation.py`` for why the tolerance is 0)
and the same training traffic; Centralized, which pools the clients' data, must be refused
with an error that says so. The default run checks the rules that use every hook the network
has to carry (broadcast extras, client extras, base-weight deltas, per-rank views, shared keys
that change over rounds, private experts); the rest are ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")

from flower_helpers import flower_run_config, fresh_runtimes  # noqa: E402, F401
from safetensors.torch import load_file  # noqa: E402

from fedmllm.build import build_components, make_simulator  # noqa: E402
from fedmllm.configs import CONFIG_DIR  # noqa: E402
from fedmllm.deploy.flower.client_app import make_client_app  # noqa: E402
from fedmllm.deploy.flower.local_grid import LocalGrid  # noqa: E402
from fedmllm.deploy.flower.server_app import GLOBAL_ADAPTER, run_server  # noqa: E402

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
# SCAFFOLD: c down, Δc up, c_k on the node; FedEx: base-weight deltas; FedLEASE: cluster
# broadcast and shared keys that change after warm-up; FedSA: private B; FedA²: server stats.
DEFAULT = {"fedmed_scaffold", "fedmed_fedex", "fedmed_fedlease", "fedmed_fedsa", "fedmed_feda2"}
POOLED = {"fedmed_centralized"}
COMMON = ("threads=1", "federation.eval_every=0", "compare_with=null")


def grid_for(config: dict, cfg, state_dir: Path) -> LocalGrid:
    n = len(build_components(cfg).train_clients)
    nodes = [{"partition-id": i, "state-dir": str(state_dir)} for i in range(n)]
    return LocalGrid(make_client_app(config), nodes, config, fresh_process=True)


def _params():
    for name in EXPERIMENTS:
        marks = [] if name in DEFAULT or name in POOLED else [pytest.mark.slow]
        yield pytest.param(name, marks=marks, id=name)


def check_against_simulator(make_cfg, cache_dir: Path, tmp_path: Path, *args: str) -> None:
    """Run ``args`` (experiment + overrides) on Flower and in the simulator; compare."""
    experiment, *extra = args
    cfg = make_cfg(experiment, *COMMON, *extra)
    config = flower_run_config(cache_dir, tmp_path, experiment, *COMMON, *extra)
    if experiment in POOLED:
        with pytest.raises(ValueError, match="pools every client's data"):
            run_server(grid_for(config, cfg, tmp_path / "nodes"), config)
        return
    grid = grid_for(config, cfg, tmp_path / "nodes")
    results = run_server(grid, config)
    flower = load_file(tmp_path / "flower" / GLOBAL_ADAPTER)
    sim, _ = make_simulator(cfg, build_components(cfg), Path(cfg.paths.output_dir))
    out = sim.fit()
    assert flower.keys() == sim.global_state.keys()
    for k, v in sim.global_state.items():
        assert torch.equal(flower[k], v.contiguous()), k
    assert results["deploy"]["rejected_replies"] == results["deploy"]["failed_replies"] == 0
    assert results["comm"] == out["comm"]
    # The rule's own scalars of the last aggregation are recorded as the simulator logs them.
    last = [h for h in results["history"] if "aggregated" in h][-1]
    stats = {k: float(v) for k, v in sim.aggregator.round_stats().items()}
    assert last.get("server", {}) == stats


@pytest.mark.parametrize("experiment", list(_params()))
def test_experiment_on_flower_equals_the_simulator(experiment, make_cfg, cache_dir, tmp_path):
    check_against_simulator(make_cfg, cache_dir, tmp_path, experiment)


def test_heterogeneous_ranks_on_flower_equal_the_simulator(make_cfg, cache_dir, tmp_path):
    """Each node receives the global state at its own rank (``aggregator.for_client``)."""
    ranks = "method.client_ranks={vqa: 4, report: 2}"
    check_against_simulator(make_cfg, cache_dir, tmp_path, "fedmed_flexlora", ranks)


def test_sixteen_bit_wire_on_flower_equals_the_simulator(make_cfg, cache_dir, tmp_path):
    # bfloat16 tensors cross Flower's records bit for bit; SCAFFOLD also sends Δc and c.
    check_against_simulator(
        make_cfg, cache_dir, tmp_path, "fedmed_scaffold", "federation.wire_dtype=bfloat16"
    )
