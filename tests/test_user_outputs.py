"""What a user reads: traceable predictions, readable plots of short runs, inspect's output
folder, and errors in one line that name the option to set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedmllm.data.inspect import main as inspect_main
from fedmllm.data.schema import Sample
from fedmllm.federation.evaluation import write_predictions
from fedmllm.models.engine import build_tiny_vlm
from fedmllm.report import collect, compare
from fedmllm.report.plots import comm_vs_accuracy, drift_curves, loss_curves

ROOT = Path(__file__).resolve().parents[1]


def test_every_prediction_line_names_its_sample(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    real = Sample("/data/slake/img_7.png", "ct", "q?", "yes", "vqa", "closed")
    real.meta = {"id": "slake/7", "source": "slake", "split": "test", "record_file": "/d/t.json"}
    synthetic = Sample(image, "ct", "q?", "no", "vqa", "closed", meta={"source": "fedmed_synth"})
    path = tmp_path / "vqa.jsonl"
    write_predictions(path, [real, synthetic], ["yes", "yes"], client_id="hospital_a")
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["id"] == "slake/7" and first["image"] == "/data/slake/img_7.png"
    assert first["record"] == {"source": "slake", "split": "test", "record_file": "/d/t.json"}
    # A generated image has no file: the id says where in the client's test split it is.
    assert second["id"] == "hospital_a/test/1" and second["image"] is None
    assert second["record"] == {"source": "fedmed_synth"}
    assert (second["answer"], second["prediction"]) == ("no", "yes")


def _one_round_run(root: Path, name: str, method: str, up: int) -> None:
    history = [
        {
            "round": 1,
            "train": {"vqa": {"loss": 2.0}, "report": {"loss": 3.0}},
            "drift": {"variance": 0.1, "dist_global": {"vqa": 0.2, "report": 0.4}},
        }
    ]
    clients = {
        c: {"task": c, "main_metric": m, "scores": {m: 0.5}, "baseline": {m: 0.1}}
        for c, m in (("vqa", "em"), ("report", "rougeL"))
    }
    results = {
        "method": method,
        "display_name": method,
        "method_group": "Global",
        "benchmark": "bench",
        "seed": 0,
        "rounds": 1,
        "clients": clients,
        "avg": 0.5,
        "baseline_avg": 0.1,
        "comm": {"up_bytes": up, "down_bytes": up},
        "wall_s": 1.0,
        "peak_rss_mb": 1.0,
        "history": history,
        "config": {"seed": 0},
    }
    (root / name).mkdir()
    (root / name / "results.json").write_text(json.dumps(results))


def test_plots_of_a_one_round_run_have_integer_ticks_and_labels_inside(tmp_path):
    _one_round_run(tmp_path, "a", "a_method_with_a_long_name", up=0)
    _one_round_run(tmp_path, "b", "another_method_with_a_long_name", up=300_000)
    [comp] = compare(collect([tmp_path]))
    for fig in (drift_curves(comp), loss_curves(comp)):
        for ax in fig.axes:
            if ax.lines:
                assert [t.get_text() for t in ax.get_xticklabels()] == ["1"]
    fig = comm_vs_accuracy(comp)
    fig.canvas.draw()
    [ax] = fig.axes
    box = ax.get_window_extent()
    for text in ax.texts:
        inside = text.get_window_extent()
        assert box.x0 <= inside.x0 and inside.x1 <= box.x1, text.get_text()


def test_inspect_writes_under_logs_and_names_a_bad_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["benchmark=fedmed_synth", "benchmark.public_size=0", "benchmark.test_size=1"]
    small = "benchmark.train_sizes={vqa:2,report:2,detection:2}"
    assert inspect_main([*args, small, f"paths.data_dir={tmp_path}"]) == 0
    [png] = (tmp_path / "logs" / "inspect").glob("*/inspect_fedmed_synth.png")
    assert not list(tmp_path.glob("*.png"))  # nothing in the working directory
    capsys.readouterr()
    assert inspect_main(["benchmark=fedmed_synth", "benchmark.partition.nclients=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean benchmark.partition.num_clients" in err


def test_empty_public_split_says_which_option_to_set(tmp_path):
    with pytest.raises(ValueError, match=r"benchmark\.public_size=<n>.*model\.pretrain\.steps=0"):
        build_tiny_vlm(tmp_path, [], ["yes"], pretrain={"steps": 5})


def test_eval_answers_a_typo_in_one_line_without_loading(tmp_path):
    (tmp_path / "config.yaml").write_text("federation:\n  eval_batch_size: 4\n")
    (tmp_path / "last.ckpt").write_text("not read")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), f"ckpt_path={tmp_path}", "federaton.x=1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "did you mean federation" in lines[0]
    assert "Traceback" not in proc.stderr
