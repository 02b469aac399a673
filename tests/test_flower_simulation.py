"""Flower's simulation engine (Ray actors, real Flower messages) against the in-process
simulator: the same experiment and seed must end with the same global adapter.

Why bit-for-bit equality is expected (tolerance 0): both paths run the same code on the same
tensors — ``LocalTrainer.train`` with batches and dropout seeded by (seed, round, client),
one torch thread on both sides (``threads=1``), the aggregator fed the updates in the sampled
order — and Flower's ``ArrayRecord`` carries float32 bytes unchanged. Any difference would
mean the Flower path trained or aggregated something else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")
pytest.importorskip("ray")

from flower_helpers import flower_run_config  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fedmllm.deploy.flower.server_app import GLOBAL_ADAPTER  # noqa: E402
from fedmllm.deploy.flower.simulation import run_simulation  # noqa: E402
from fedmllm.report import __main__ as report_cli  # noqa: E402
from fedmllm.report.collect import collect  # noqa: E402
from fedmllm.train import run  # noqa: E402

COMMON = ("threads=1", "federation.eval_every=0", "compare_with=null")


def flower_run(cache_dir: Path, out: Path, experiment: str, *extra: str) -> Path:
    """Run ``experiment`` (smoke) on Flower's simulation engine; returns its run directory."""
    run_simulation(flower_run_config(cache_dir, out, experiment, *COMMON, *extra), num_cpus=1)
    return out / "flower"


def simulator_run(make_cfg, experiment: str, *extra: str) -> tuple[dict, dict]:
    """``train.py``'s run of the same config: its final global state and results."""
    cfg = make_cfg(experiment, *COMMON, *extra)
    _, objects = run(cfg)
    return objects["simulator"].global_state, objects["results"]


def assert_same_global(run_dir: Path, reference: dict[str, torch.Tensor]) -> None:
    flower = load_file(run_dir / GLOBAL_ADAPTER)
    assert flower.keys() == reference.keys()
    for k, v in reference.items():
        assert torch.equal(flower[k], v.contiguous()), k


@pytest.mark.parametrize("experiment", ["fedmed_fedavg", "fedmed_mole"])
def test_simulation_engine_ends_where_the_simulator_ends(experiment, make_cfg, cache_dir, tmp_path):
    run_dir = flower_run(cache_dir, tmp_path, experiment)
    reference, expected = simulator_run(make_cfg, experiment)
    assert_same_global(run_dir, reference)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["deploy"]["mode"] == "simulation"
    assert results["deploy"]["rejected_replies"] == results["deploy"]["failed_replies"] == 0
    # Training traffic is counted as the simulator counts it: the same bytes up and down.
    assert results["comm"] == expected["comm"]
    # The same model scored on the same test splits: the same final scores.
    assert results["clients"] == expected["clients"]
    assert results["avg"] == expected["avg"]
    # fedmllm.report reads both runs (same results.json format) and tells them apart.
    sim_dir = tmp_path / "run"
    runs = collect([sim_dir, run_dir])
    by_engine = {"flower" if "deploy.engine=flower" in r.variant else "simulator": r for r in runs}
    assert set(by_engine) == {"flower", "simulator"}
    assert by_engine["flower"].avg == by_engine["simulator"].avg == expected["avg"]
    assert report_cli.main([str(sim_dir), str(run_dir), "--no-export"]) == 0
