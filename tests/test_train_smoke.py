"""End to end: every experiment runs with debug=smoke and writes a truthful results.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedmllm.configs import CONFIG_DIR
from fedmllm.lora.layers import LoRALinear
from fedmllm.train import run

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def _adapter_bytes(model) -> int:
    """Bytes of all LoRA tensors, counted from the layers' shapes (not from the state code)."""
    total = 0
    for m in model.modules():
        if isinstance(m, LoRALinear):
            total += m.r * (m.in_features + m.out_features) * 4
    return total


def _factor_bytes(model) -> tuple[int, int, int]:
    """Bytes of all A factors, all B factors, and of the dense d_out×d_in of those layers."""
    a = b = dense = 0
    for m in model.modules():
        if isinstance(m, LoRALinear):
            a += m.r * m.in_features * 4
            b += m.r * m.out_features * 4
            dense += m.in_features * m.out_features * 4
    return a, b, dense


# Rules whose clients send and receive exactly the full LoRA adapter once per round.
FULL_ADAPTER = {"fedavg", "fedprox", "feddpa", "fedadam", "fedyogi", "fedadagrad", "feda2"}


def _expected_comm(method: str, rounds: int, k: int, model) -> dict[str, int] | None:
    """What each rule must put on the wire, from layer shapes; None where not pinned here."""
    a, b, dense = _factor_bytes(model)
    n = a + b
    if method in FULL_ADAPTER | {"flexlora"}:
        return {"up_bytes": rounds * k * n, "down_bytes": rounds * k * n}
    if method == "ffa":  # B only, both ways
        return {"up_bytes": rounds * k * b, "down_bytes": rounds * k * b}
    if method == "fedsa":  # A only, both ways
        return {"up_bytes": rounds * k * a, "down_bytes": rounds * k * a}
    if method == "scaffold":  # + Δc_k up every round, + c down from the second round on
        return {"up_bytes": 2 * rounds * k * n, "down_bytes": (2 * rounds - 1) * k * n}
    if method == "fedex":  # + the d_out×d_in residual of every layer to every client
        return {"up_bytes": rounds * k * n, "down_bytes": rounds * k * (n + dense)}
    return None


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_in_smoke_mode(experiment, make_cfg):
    cfg = make_cfg(experiment)
    metrics, objects = run(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    expected_clients = {c.client_id for c in objects["components"].benchmark.clients}
    assert set(results["clients"]) == expected_clients
    for c in results["clients"].values():
        assert 0.0 <= c["scores"][c["main_metric"]] <= 1.0
        assert 0.0 <= c["baseline"][c["main_metric"]] <= 1.0
    assert metrics["avg_main"] == pytest.approx(results["avg"])
    for key in ("comm", "wall_s", "peak_rss_mb", "rounds", "seed", "config", "method", "benchmark"):
        assert key in results
    n_bytes = _adapter_bytes(objects["components"].engine.model)
    rounds = cfg.federation.rounds
    if results["method"] == "standalone":  # nothing leaves a hospital
        assert results["comm"] == {"up_bytes": 0, "down_bytes": 0}
    elif results["method"] == "fedavg":  # every client sends and receives the full adapter
        k = len(expected_clients)
        assert results["comm"]["up_bytes"] == rounds * k * n_bytes
        assert results["comm"]["down_bytes"] == rounds * k * n_bytes
    elif results["method"] == "fedlease" and rounds < cfg.aggregator.warmup_rounds:
        assert results["comm"]["up_bytes"] == 0  # warm-up: local only, a flag goes down
        assert results["comm"]["down_bytes"] < 100
    expected = _expected_comm(
        results["method"], rounds, len(expected_clients), objects["components"].engine.model
    )
    if expected is not None:
        assert results["comm"] == expected
    for cid in results["clients"]:
        lines = (
            (Path(cfg.paths.output_dir) / "predictions" / f"{cid}.jsonl").read_text().splitlines()
        )
        assert len(lines) == cfg.benchmark.test_size


def _train(*args: str, tmp_path: Path, cache_dir: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        *args,
        f"paths.data_dir={cache_dir}",
        f"paths.log_dir={tmp_path}",
        "logger=none",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_unknown_experiment_is_a_clear_error(tmp_path, cache_dir):
    proc = _train("experiment=fedmed_nope", tmp_path=tmp_path, cache_dir=cache_dir)
    assert proc.returncode != 0
    assert "Could not find 'experiment/fedmed_nope'" in proc.stderr
    assert "fedmed_fedavg" in proc.stderr  # the available options are listed
    assert "Traceback" not in proc.stderr


def test_unknown_target_module_is_a_clear_error(tmp_path, cache_dir):
    proc = _train(
        "experiment=fedmed_fedavg",
        "debug=smoke",
        "method.target_modules=[qq_proj]",
        tmp_path=tmp_path,
        cache_dir=cache_dir,
    )
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert "qq_proj" in out and "up_proj" in out  # names the bad target and what exists
    assert "Traceback" not in out


def test_eval_of_a_finished_run_reproduces_its_final_scores(make_cfg):
    from fedmllm.evaluate import evaluate_run

    cfg = make_cfg("fedmed_standalone", "federation.local_steps=3", "federation.lr=0.01")
    _, objects = run(cfg)
    trained = objects["results"]["clients"]
    evaluated = evaluate_run(cfg.paths.output_dir)["clients"]
    scores = {c: v["scores"] for c, v in trained.items()}
    assert {c: v["scores"] for c, v in evaluated.items()} == scores
    assert (Path(cfg.paths.output_dir) / "eval_results.json").is_file()


def test_eval_names_a_missing_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), f"ckpt_path={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "config.yaml" in proc.stderr and "Traceback" not in proc.stderr
