"""Acceptance: a real Hydra multirun (2 methods × 2 seeds, debug=smoke) → one dir → report.

Expected numbers are read from the runs' results.json files with ``json`` and averaged here
with ``statistics``, never through the report's own aggregation code.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from fedmllm.report import collect, compare
from fedmllm.report.__main__ import main
from fedmllm.report.plots import client_bars, comm_vs_accuracy, drift_curves, loss_curves

ROOT = Path(__file__).resolve().parents[1]
# Enough steps that scores are not all zero, so the comparison has something to compare.
SMOKE = ("debug=smoke", "federation.rounds=3", "federation.local_steps=4", "federation.lr=0.01")


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "train.py"), *args, "threads=1", "logger=none"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def multirun(tmp_path_factory, cache_dir) -> Path:
    logs = tmp_path_factory.mktemp("logs")
    proc = _train(
        "-m",
        "experiment=fedmed_fedavg,fedmed_standalone",
        "seed=0,1",
        *SMOKE,
        f"paths.data_dir={cache_dir}",
        f"paths.log_dir={logs}",
        cwd=logs,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dirs = list((logs / "multiruns").iterdir())
    assert len(dirs) == 1, dirs  # ONE multirun dir although the experiments' task_names differ
    assert not (logs / "fedmed_fedavg").exists() and not (logs / "smoke").exists()
    return dirs[0]


def _files(multirun: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for p in multirun.glob("*/results.json"):
        r = json.loads(p.read_text())
        out[(r["method"], r["seed"])] = r
    return out


def test_multirun_lands_in_one_dir_with_readable_subdirs(multirun):
    names = sorted(p.name for p in multirun.iterdir() if p.is_dir())
    # Named by what the sweep varies (experiment, seed), not by the fixed SMOKE overrides.
    assert names == [
        "fedmed_fedavg_seed0",
        "fedmed_fedavg_seed1",
        "fedmed_standalone_seed0",
        "fedmed_standalone_seed1",
    ]
    files = _files(multirun)
    assert set(files) == {(m, s) for m in ("fedavg", "standalone") for s in (0, 1)}
    if sys.platform == "linux":  # each job's peak RSS is its own, not the sweep process's
        assert {r["peak_rss_scope"] for r in files.values()} == {"run"}


def test_report_numbers_equal_the_runs_results(multirun, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(multirun), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    files = _files(multirun)
    clients = list(files[("fedavg", 0)]["clients"])
    rows = {r["method"]: r for r in csv.DictReader((out / "table_fedmed_synth.csv").open())}
    md = (out / "table_fedmed_synth.md").read_text()
    tex = (out / "table_fedmed_synth.tex").read_text()
    for method in ("fedavg", "standalone"):
        for col in [*clients, "Avg"]:
            vals = [
                files[(method, s)]["avg"]
                if col == "Avg"
                else files[(method, s)]["clients"][col]["scores"][
                    files[(method, s)]["clients"][col]["main_metric"]
                ]
                for s in (0, 1)
            ]
            mean, std = 100 * statistics.mean(vals), 100 * statistics.stdev(vals)
            assert float(rows[method][f"{col}_mean"]) == pytest.approx(mean, abs=1e-9)
            assert float(rows[method][f"{col}_std"]) == pytest.approx(std, abs=1e-9)
            cell = f"{mean:.2f} ± {std:.2f}"
            assert cell in md and cell in printed
            assert cell.replace("±", "$\\pm$") in tex
        for col in [*clients, "Avg"]:  # Δ = FedAvg mean − Standalone mean
            fa, sa = float(rows["fedavg"][f"{col}_mean"]), float(rows["standalone"][f"{col}_mean"])
            assert float(rows["fedavg"][f"{col}_delta"]) == pytest.approx(fa - sa, abs=1e-9)
            below = [c for c in rows["fedavg"]["below_reference"].split() if c]
            assert (col in below) == (fa < sa and col != "Avg")
    costs = {r["method"]: r for r in csv.DictReader((out / "costs_fedmed_synth.csv").open())}
    r0, r1 = files[("fedavg", 0)], files[("fedavg", 1)]
    per_round = statistics.mean(r["comm"]["up_bytes"] / r["rounds"] for r in (r0, r1))
    assert float(costs["fedavg"]["up_per_round"]) == pytest.approx(per_round)
    assert float(costs["standalone"]["total_bytes"]) == 0.0
    assert float(costs["fedavg"]["wall_s"]) == pytest.approx((r0["wall_s"] + r1["wall_s"]) / 2)
    assert float(costs["fedavg"]["peak_rss_mb"]) == pytest.approx(
        (r0["peak_rss_mb"] + r1["peak_rss_mb"]) / 2
    )
    round_s = [statistics.mean(h["wall_s"] for h in r["history"] if "train" in h) for r in (r0, r1)]
    assert float(costs["fedavg"]["round_s"]) == pytest.approx(statistics.mean(round_s))
    assert {p.suffix for p in out.iterdir()} == {".md", ".csv", ".tex"}


def test_drift_and_train_losses_reach_results_json(multirun):
    for (method, _), r in _files(multirun).items():
        rounds = [h for h in r["history"] if "train" in h]
        assert [h["round"] for h in rounds] == [1, 2, 3]
        for h in rounds:
            assert set(h["train"]) == set(r["clients"]) and all(
                m["loss"] > 0 for m in h["train"].values()
            )
            d = h["drift"]
            assert d["variance"] >= 0 and set(d["dist_mean"]) == set(r["clients"])
            if method == "standalone":
                assert "dist_global" not in d
            else:
                # Equal train sizes: FedAvg's global is the plain client mean, so the distance
                # to the aggregator's output equals the distance to the Welford mean.
                for cid, v in d["dist_global"].items():
                    assert v == pytest.approx(d["dist_mean"][cid], rel=1e-4)
        assert [h["round"] for h in r["history"] if "scores" in h] == [3]


def test_plots_have_one_bar_per_client_and_method_and_labelled_axes(multirun, tmp_path):
    [comp] = compare(collect([multirun]))
    bars = client_bars(comp)
    [ax] = bars.axes
    n_rows = len(comp.rows) - 1  # the Standalone reference is a dashed line, not bars
    assert len(ax.patches) == n_rows * len(comp.columns)
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    fedavg = next(r for r in comp.rows if r.method == "fedavg")
    assert heights == sorted(round(100 * fedavg.scores[c].mean, 6) for c in comp.columns)
    [ref_lines] = [c for c in ax.collections if c.get_gid() == "reference"]
    assert len(ref_lines.get_segments()) == len(comp.columns)  # a Standalone line per column
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "FedAvg" in legend and "Standalone (reference)" in legend
    for fig in (bars, drift_curves(comp), loss_curves(comp), comm_vs_accuracy(comp)):
        for a in fig.axes:
            assert a.get_xlabel() and a.get_ylabel() and a.get_title()
    drift = drift_curves(comp)
    variance_ax = drift.axes[0]
    assert [len(line.get_xdata()) for line in variance_ax.lines] == [3, 3]  # 2 methods × 3 rounds
    assert [a.get_title() for a in loss_curves(comp).axes] == [f"client {c}" for c in comp.clients]
    assert main([str(multirun), "--out", str(tmp_path), "--plot", "--no-export"]) == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == [f"{n}_fedmed_synth.png" for n in ("bars", "comm_vs_acc", "drift", "loss")]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in tmp_path.glob("*.png"))


def test_analysis_notebook_executes_on_the_multirun(multirun, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("FEDMLLM_RUNS", str(multirun))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "FedAvg" in markdown and "±" in markdown and "↑ / round" in markdown
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # bars, drift, loss, comm vs accuracy
    assert os.environ["FEDMLLM_RUNS"] in "".join(o.get("text", "") for o in outputs)
