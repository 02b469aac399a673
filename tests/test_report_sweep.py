"""The Optuna learning-rate search config runs as a Hydra sweep and the report reads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedmllm.report import collect, compare

ROOT = Path(__file__).resolve().parents[1]


def test_optuna_lr_search_lands_in_one_multirun_and_reports_the_best_trial(tmp_path, cache_dir):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "hparams_search=fedmed_lr_optuna",  # hydra.mode=MULTIRUN: no -m needed
        "experiment=fedmed_fedavg",
        "debug=smoke",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "federation.local_steps=3",
        "threads=1",
        "logger=none",
        f"paths.data_dir={cache_dir}",
        f"paths.log_dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [sweep] = list((tmp_path / "multiruns").iterdir())
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    lrs = [r["config"]["federation"]["lr"] for r in results]
    assert len(lrs) == 2 and lrs[0] != lrs[1]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs)  # the configured log-interval
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(r["avg"] for r in results))
    [comp] = compare(collect([sweep]))
    # the two trials differ only in lr: two rows, each labelled by its lr
    assert sorted(r.label for r in comp.rows) == sorted(
        f"FedAvg [federation.lr={lr}]" for lr in lrs
    )
