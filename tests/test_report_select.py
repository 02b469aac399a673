"""Choosing a method's setting on validation, on hand-made results.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedmllm.report import select
from fedmllm.report.collect import collect


def write(root: Path, name: str, seed: int, eta: float, val: float | None, test: float) -> None:
    results = {
        "method": "fedavg",
        "display_name": "FedAdam",
        "benchmark": "bench",
        "seed": seed,
        "rounds": 2,
        "clients": {"a": {"task": "vqa", "main_metric": "m", "scores": {"m": test}}},
        "avg": test,
        "comm": {"up_bytes": 0, "down_bytes": 0},
        "config": {"seed": seed, "aggregator": {"eta": eta}},
    }
    if val is not None:
        results["val_avg"] = val
    path = root / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(results))


def test_the_best_mean_validation_wins_whatever_test_says(tmp_path: Path) -> None:
    # η = 0.01: val mean (0.5 + 0.3) / 2 = 0.4, test 0.1; η = 0.1: val 0.35, test 0.9.
    write(tmp_path, "a0", 0, 0.01, 0.5, 0.1)
    write(tmp_path, "a1", 1, 0.01, 0.3, 0.1)
    write(tmp_path, "b0", 0, 0.1, 0.35, 0.9)
    write(tmp_path, "b1", 1, 0.1, 0.35, 0.9)
    choices = select.choose(collect([tmp_path]))
    chosen = [c for c in choices if c.chosen]
    assert len(chosen) == 1 and chosen[0].variant == "aggregator.eta=0.01"
    assert chosen[0].val == pytest.approx(0.4) and chosen[0].test == pytest.approx(0.1)
    assert chosen[0].seeds == [0, 1]


def test_runs_without_validation_and_test_metrics_are_refused(tmp_path: Path, capsys) -> None:
    write(tmp_path, "a0", 0, 0.01, None, 0.1)
    assert select.main([str(tmp_path)]) == 2
    assert "no validation split" in capsys.readouterr().err
    assert select.main([str(tmp_path), "--metric", "avg"]) == 2


def test_cli_marks_the_choice(tmp_path: Path, capsys) -> None:
    write(tmp_path, "a0", 0, 0.01, 0.2, 0.5)
    write(tmp_path, "b0", 0, 0.1, 0.6, 0.4)
    assert select.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("* bench | FedAdam | aggregator.eta=0.1 | seeds 0 | val 60.00")
    assert lines[0].startswith("  bench | FedAdam | aggregator.eta=0.01")
