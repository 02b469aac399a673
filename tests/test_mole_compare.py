"""Fed-MoLE end to end: baselines run first or reused, side-by-side table, Table 9 probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict
from rich.console import Console

from fedmllm.compare_with import baseline_configs, find_finished_run
from fedmllm.report.side_by_side import seed_summary, side_by_side_table
from fedmllm.train import run, run_baselines
from fedmllm.utils.tensorboard import log_histograms


def _results(method: str, seed: int, vqa: float, report: float) -> dict:
    clients = {
        "vqa": {"task": "vqa", "main_metric": "em", "scores": {"em": vqa}, "baseline": {"em": 0.2}},
        "report": {
            "task": "report",
            "main_metric": "rougeL",
            "scores": {"rougeL": report},
            "baseline": {"rougeL": 0.1},
        },
    }
    return {
        "method": method,
        "benchmark": "b",
        "seed": seed,
        "rounds": 3,
        "clients": clients,
        "avg": (vqa + report) / 2,
        "comm": {"up_bytes": 2**20, "down_bytes": 2**20},
    }


def _render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_side_by_side_table_shows_each_run_and_deltas_vs_the_reference() -> None:
    runs = {
        "standalone": _results("standalone", 0, 0.50, 0.30),
        "mole": _results("mole", 0, 0.55, 0.25),
    }
    text = _render(side_by_side_table(runs, reference="standalone"))
    vqa = next(line for line in text.splitlines() if line.strip("│ ").startswith("vqa"))
    assert "50.00" in vqa and "55.00" in vqa and "+5.00 ↑" in vqa
    report = next(line for line in text.splitlines() if "report" in line)
    assert "-5.00 ↓" in report
    avg = next(line for line in text.splitlines() if "Avg" in line)
    assert "40.00" in avg and "+0.00 =" in avg  # (0.55+0.25)/2 - (0.5+0.3)/2
    with pytest.raises(KeyError, match="fedavg"):
        side_by_side_table(runs, reference="fedavg")


def test_seed_summary_means_stds_and_paired_deltas() -> None:
    groups = {
        "standalone": [_results("standalone", s, v, 0.3) for s, v in enumerate([0.4, 0.5, 0.6])],
        "mole": [_results("mole", s, v, 0.3) for s, v in enumerate([0.5, 0.5, 0.7])],
    }
    summary = seed_summary(groups, "standalone")
    row = summary["mole"]["rows"]["vqa"]
    assert row["mean"] == pytest.approx(1.7 / 3)
    mean = 1.7 / 3  # sample standard deviation (n - 1 = 2) of 0.5, 0.5, 0.7:
    assert row["std"] == pytest.approx(((2 * (0.5 - mean) ** 2 + (0.7 - mean) ** 2) / 2) ** 0.5)
    # paired deltas 0.1, 0.0, 0.1 -> mean 1/15, wins 2
    assert row["delta_mean"] == pytest.approx(0.2 / 3)
    assert row["wins"] == 2
    assert "delta_mean" not in summary["standalone"]["rows"]["vqa"]


def test_find_finished_run_matches_on_the_compared_keys_only(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {"benchmark": {"n": 1}, "model": {}, "method": {"r": 8}, "aggregator": {}, "federation": {},
         "fabric": {}, "seed": 0, "threads": 1, "paths": {"output_dir": "x"}}
    )  # fmt: skip
    run_dir = tmp_path / "task" / "runs" / "t1"
    run_dir.mkdir(parents=True)
    other = OmegaConf.to_container(cfg)
    other.update(threads=2, paths={"output_dir": "elsewhere"})  # not compared
    (run_dir / "results.json").write_text(json.dumps({"config": other}))
    assert find_finished_run(tmp_path, cfg) == run_dir / "results.json"
    cfg.seed = 1
    assert find_finished_run(tmp_path, cfg) is None


def test_log_histograms_writes_one_histogram_per_prefix() -> None:
    calls = []
    writer = type("W", (), {"add_histogram_raw": lambda self, tag, **kw: calls.append((tag, kw))})()
    logger = type("L", (), {"experiment": writer})()
    logs = {
        "client_a/train/hist/expert_load/0": 0.25,
        "client_a/train/hist/expert_load/1": 0.75,
        "client_a/train/loss": 1.0,
    }
    log_histograms(logger, logs, step=3)
    assert len(calls) == 1
    tag, kw = calls[0]
    assert tag == "client_a/train/expert_load" and kw["bucket_counts"] == [0.25, 0.75]
    assert kw["sum"] == pytest.approx(0.75) and kw["global_step"] == 3


def test_baselines_adapt_the_same_modules_as_mole(make_cfg) -> None:
    cfg = make_cfg("fedmed_mole", "method.lora_targets=[q_proj]", "method.r=4")
    bases = baseline_configs(cfg)
    assert list(bases) == ["standalone", "fedavg"]
    for label, base in bases.items():
        assert list(base.method.target_modules) == ["q_proj", "up_proj"]
        assert base.method.r == 4 and base.compare_with is None
        assert base.method.name == label
    assert bases["standalone"].method.share == "none"
    assert bases["standalone"].aggregator._target_.endswith("NoAggregation")


def test_fedmed_mole_runs_baselines_then_reuses_them(make_cfg, tmp_path) -> None:
    # Execute: a run trains the baselines; asking for them again finds the finished runs
    cfg = make_cfg("fedmed_mole")
    _, first = run(cfg)
    again = make_cfg("fedmed_mole")
    with open_dict(again):
        again.paths.output_dir = str(tmp_path / "run2")
    reused = run_baselines(again)
    # Assert
    res = first["results"]
    paths = res["compared_with"]
    assert set(paths) == {"standalone", "fedavg"}
    assert {k: v["results_path"] for k, v in reused.items()} == paths  # reused, not retrained
    assert len(list((tmp_path / "logs").glob("*/runs/*"))) == 2
    fedavg = json.loads(Path(paths["fedavg"]).read_text())
    assert res["comm"] == fedavg["comm"]  # same targets and rank: same bytes
    sim = res["path_similarity"]
    assert set(sim["paths"]) == {"shared", "routed"}
    assert all(-1.0 <= v <= 1.0 for v in sim["paths"].values())
    assert sim["clients"] == sorted(res["clients"])
    assert set(fedavg["path_similarity"]["paths"]) == {"lora"}


@pytest.mark.slow
def test_grid_sweep_skips_k_above_n_with_a_clear_error_and_runs_the_rest(tmp_path, cache_dir):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        str(root / "train.py"),
        "-m",
        "experiment=fedmed_mole",
        "debug=smoke",
        "compare_with=null",
        "method.num_experts=1",
        "method.top_k=2,1",
        f"paths.data_dir={cache_dir}",
        f"paths.log_dir={tmp_path}",
        "logger=none",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0  # Hydra reports the failed job at the end of the sweep
    assert "method.top_k=2: must be <= method.num_experts=1" in out
    finished = list(tmp_path.glob("multiruns/*/*/results.json"))
    assert len(finished) == 1  # the valid job after the failed one still ran
    assert json.loads(finished[0].read_text())["config"]["method"]["top_k"] == 1
