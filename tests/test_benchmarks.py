"""Every ``benchmarks/bench_*.py`` still runs: its ``--quick`` mode prints the full mode's JSON.

Quick mode shrinks the sizes and runs the same code; its numbers measure nothing, so these tests
check the shape of the output (the keys the docs quote, their types) and what must hold at any
size: positive times and sizes, finite ratios, and each script's own invariants (the factored
ridge solve equals the dense one; batched generation predicts what one-by-one does).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def run_quick(script: str) -> dict:
    """The JSON line ``benchmarks/<script> --quick`` prints, with one torch thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.pop("quick") is True
    return out


def positive(*values: object) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in values)


def check_engine(out: dict) -> None:
    keys = "model steps_per_client batch_size rss_mb_2 rss_mb_32 rss_ratio_32_vs_2"
    keys += " overhead_clients fed_round_s plain_steps_s overhead_ratio repeats threads"
    assert set(out) == set(keys.split())
    assert positive(out["rss_mb_2"], out["rss_mb_32"], out["fed_round_s"], out["plain_steps_s"])
    assert positive(out["rss_ratio_32_vs_2"], out["overhead_ratio"])
    # Both ratios are of the printed (rounded) quantities: 3 decimals of a few ms.
    assert out["rss_ratio_32_vs_2"] == pytest.approx(out["rss_mb_32"] / out["rss_mb_2"], rel=1e-2)
    assert out["overhead_ratio"] == pytest.approx(
        out["fed_round_s"] / out["plain_steps_s"], rel=0.1
    )


def check_drift(out: dict) -> None:
    assert set(out) == {"tiny_k3", "tiny_k10", "llava7b_k3", "llava7b_k10"}
    for entry in out.values():
        assert set(entry) == {"params", "median_s", "buffer_mib"}
        assert positive(*entry.values())
    # The default fedmed_synth LoRA: r=8 on q,k,v (128->128), up (128->256), down (256->128),
    # three layers: 3 * (3*2*8*128 + 2*8*(128+256)) = 36,864 parameters (docstring's count).
    assert out["tiny_k3"]["params"] == out["tiny_k10"]["params"] == 36_864
    # More clients keep more flattened updates for the pairwise matrix (K <= 16).
    assert out["tiny_k10"]["buffer_mib"] > out["tiny_k3"]["buffer_mib"]


def check_eval(out: dict) -> None:
    keys = "model task num_samples batch_size max_new_tokens threads repeats"
    keys += " batched_samples_per_s single_samples_per_s batched_speedup same_predictions"
    assert set(out) == set(keys.split())
    assert positive(out["batched_samples_per_s"], out["single_samples_per_s"])
    assert positive(out["batched_speedup"])
    assert out["same_predictions"] is True  # left padding must not change a greedy answer


def check_mole(out: dict) -> None:
    variants = {"lora", "mole_n8", "mole_n2", "mole_n12"}
    ratios = {f"step_ratio_{n}{w}" for n in ("vs_lora", "n12_vs_n2") for w in ("", "_wall")}
    fixed = {"model", "batch_size", "tokens_per_batch", "steps_per_repeat", "repeats", "threads"}
    assert set(out) == fixed | {"step_cpu_ms", "step_wall_ms"} | ratios
    for clock in ("step_cpu_ms", "step_wall_ms"):
        assert set(out[clock]) == variants
        assert positive(*out[clock].values())
    assert positive(*(out[r] for r in ratios), out["tokens_per_batch"])


def check_ridge(out: dict) -> None:
    times = {"dense_ms", "ours_ms", "dense_cpu_ms", "ours_cpu_ms"}
    errors = {"max_rel_err", "max_rel_err_ridge", "err_vs_fp64_ours", "err_vs_fp64_dense"}
    peaks = {"peak_extra_mb", "dense_peak_extra_mb", "peak_extra_rss_mb", "dense_peak_extra_rss_mb"}
    fixed = {"bench", "d_in", "d_out", "r", "K", "dtype", "threads", "repeats"}
    ratios = {"speedup_vs_dense", "speedup_vs_dense_wall"}
    assert set(out) == fixed | times | errors | peaks | ratios | {"one_dense_matrix_mb"}
    assert positive(*(out[t] for t in times), *(out[r] for r in ratios))
    # Both routes solve the same system in float32: they agree to float32 round-off.
    assert all(0 <= out[e] < 1e-4 for e in errors)
    assert out["one_dense_matrix_mb"] == out["d_in"] * out["d_out"] * 4 / 2**20
    # The dense route must hold U (d_out x d_in); the factored one never forms it.
    assert out["dense_peak_extra_mb"] >= out["one_dense_matrix_mb"] * 0.99
    assert positive(out["peak_extra_mb"])
    for key in ("peak_extra_rss_mb", "dense_peak_extra_rss_mb"):  # None where /proc is missing
        assert out[key] is None or isinstance(out[key], float)


CHECKS = {
    "bench_drift.py": check_drift,
    "bench_engine.py": check_engine,
    "bench_eval.py": check_eval,
    "bench_mole.py": check_mole,
    "bench_ridge.py": check_ridge,
}


# Benchmarks whose quick mode is checked by a test file of their own.
ELSEWHERE = {"bench_real.py": "test_real_bench.py"}


def test_every_benchmark_is_checked():
    assert {p.name for p in BENCHMARKS.glob("bench_*.py")} == set(CHECKS) | set(ELSEWHERE)
    assert all((Path(__file__).parent / test).is_file() for test in ELSEWHERE.values())


@pytest.mark.parametrize("script", sorted(CHECKS))
def test_quick_mode_prints_the_full_keys(script):
    CHECKS[script](run_quick(script))
