"""The data layer's benchmarks run end to end through ``fedmllm.train`` in smoke mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedmllm.lora.layers import LoRALinear
from fedmllm.train import run

# (experiment, overrides, expected client ids)
CASES = [
    ("fedmed_fedavg", ["benchmark=crossmodal_synth"], ["ct", "mri", "xray", "us"]),
    (
        "fedmed_fedavg",
        ["benchmark=crossmodal_synth", "+partition=iid", "benchmark.partition.num_clients=3"],
        ["client_0", "client_1", "client_2"],
    ),
    (
        "fedmed_standalone",
        ["benchmark=crossmodal_synth", "+partition=dirichlet", "benchmark.partition.alpha=0.3"],
        [f"client_{i}" for i in range(5)],
    ),
    pytest.param(  # Fed-MoLE Table 8: AQUA split five ways (IID)
        "fedvqa_fedavg",
        [
            "+partition=iid",
            "benchmark.partition.sources=[aqua]",
            "benchmark.train_sizes={vqa:10}",
            "benchmark.test_size=5",
        ],
        [f"aqua_{i}" for i in range(5)],
        marks=pytest.mark.slow,
    ),
    pytest.param(  # quantity skew over all five styles
        "fedvqa_fedavg",
        ["+partition=quantity", "benchmark.partition.num_clients=3"],
        ["client_0", "client_1", "client_2"],
        marks=pytest.mark.slow,
    ),
    pytest.param(  # three report hospitals, three writing styles
        "fedmed_fedavg",
        [
            "+partition=iid",
            "benchmark.partition.sources=[report]",
            "benchmark.partition.num_clients=3",
            "benchmark.partition.report_styles=[structured,narrative,terse]",
        ],
        ["report_0", "report_1", "report_2"],
        marks=pytest.mark.slow,
    ),
]


def _adapter_bytes(model) -> int:
    """Bytes of all LoRA tensors, counted from the layers' shapes."""
    return sum(
        m.r * (m.in_features + m.out_features) * 4
        for m in model.modules()
        if isinstance(m, LoRALinear)
    )


@pytest.mark.parametrize(("experiment", "overrides", "clients"), CASES)
def test_benchmark_runs_in_smoke_mode(make_cfg, experiment, overrides, clients) -> None:
    # Prepare
    cfg = make_cfg(experiment, *overrides)
    # Execute
    _, objects = run(cfg)
    # Assert
    out = Path(cfg.paths.output_dir)
    results = json.loads((out / "results.json").read_text())
    bench = objects["components"].benchmark
    assert results["benchmark"] == bench.name
    assert list(results["clients"]) == clients
    k, n_bytes = len(clients), _adapter_bytes(objects["components"].engine.model)
    expected_up = 0 if results["method"] == "standalone" else cfg.federation.rounds * k * n_bytes
    assert results["comm"]["up_bytes"] == expected_up
    for c in bench.clients:
        lines = (out / "predictions" / f"{c.client_id}.jsonl").read_text().splitlines()
        assert len(lines) == len(c.test) > 0
        assert results["clients"][c.client_id]["task"] == c.task
