"""benchmarks/bench_real.py --quick: the GPU benchmark runs on CPU and reports every part."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_real.py"


def test_bench_real_quick_runs_every_variant(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_real", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    result = bench.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    variants = result["variants"]
    assert set(variants) == {"lora", "lora_ckpt", "mole", "mole_ckpt", "peft"}
    setup = result["setup"]
    for v in variants.values():
        assert v["step_s"] > 0
        assert abs(v["tokens_per_s"] * v["step_s"] - setup["tokens_per_step"]) < 1e-6
    # PEFT adapts exactly the modules our LoRA adapts, with the same rank.
    assert variants["peft"]["trainable_params"] == variants["lora"]["trainable_params"]
    # MoLE adds 8 routed experts and a router beside the shared expert on up_proj.
    assert variants["mole"]["trainable_params"] > variants["lora"]["trainable_params"]
    assert variants["lora_ckpt"]["estimate_gb"] <= variants["lora"]["estimate_gb"]
    assert result["round"]["many"]["clients"] == 5 and result["round"]["one"]["clients"] == 1
    keys = {
        "mole_overhead_gb",
        "mole_overhead_ckpt_gb",
        "mole_step_ratio",
        "lora_vs_peft_step_ratio",
    }
    assert keys <= set(result)
