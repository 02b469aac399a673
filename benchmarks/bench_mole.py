"""Cost of Fed-MoLE's train step: sparse dispatch keeps it near plain LoRA and flat in N.

Prints one JSON line:
  step_ratio_vs_lora   train-step time of Fed-MoLE (MoLE N=8, K=2 on up_proj, LoRA on q/k/v)
                       over plain LoRA on q/k/v/up_proj (target <= 1.5);
  step_ratio_n12_vs_n2 Fed-MoLE with N=12 over N=2, both K=2 (target <= 1.3);
  *_joint              with --joint: the same ratios with all adapter parts trained in every
                       step (V1), the costliest step (an ADA step trains part of them).

All variants run on ``tiny_vlm_base`` (random init: cost does not depend on the weights), on
the same batch, in one process; each repeat times every variant once, in a shuffled order
(interleaved), and the ratios are of medians. The headline ratios use the process's CPU time
with one torch thread, which other jobs on a shared machine barely change; the ``*_wall``
ratios use wall time (noisy when the machine is shared).
A Fed-MoLE step here is its real local step: half the steps of a block train the routed
experts and routers (phase 1), half the shared parts (phase 2).

    python benchmarks/bench_mole.py [--repeats 5] [--steps 2] [--batch-size 8] [--joint] [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from _common import parse_args, random_engine, synth_benchmark

from fedmllm.methods import LoRAMethod, MoLEMethod

LORA_TARGETS = ["q_proj", "k_proj", "v_proj"]
QUICK = {"model": "tiny_vlm", "repeats": 1, "steps": 1, "batch_size": 2}


def build_variants(model: str, cache: Path, joint: bool) -> tuple[dict[str, Any], list]:
    """One method per variant, each on its own engine with identical base weights."""
    bench = synth_benchmark(cache, public_size=64)
    common = {"r": 8, "alpha": 16, "dropout": 0.05}

    def mole(n: int, ada: bool) -> MoLEMethod:
        engine = random_engine(model, bench.public, cache)
        return MoLEMethod(
            engine, ["up_proj"], LORA_TARGETS, num_experts=n, top_k=2, ada=ada, **common
        )

    variants = {
        "lora": LoRAMethod(
            random_engine(model, bench.public, cache), [*LORA_TARGETS, "up_proj"], **common
        ),
        "mole_n8": mole(8, True),
        "mole_n2": mole(2, True),
        "mole_n12": mole(12, True),
    }
    if joint:
        variants.update({f"mole_n{n}_joint": mole(n, False) for n in (8, 2, 12)})
    return variants, bench.public


def time_steps(
    fabric: L.Fabric, method: Any, batch: dict, steps: int, opt: Any
) -> tuple[float, float]:
    """Wall and CPU seconds per train step (forward, backward, AdamW step) over ``steps``."""
    wall, cpu = time.perf_counter(), time.process_time()
    method.local_update(fabric, iter([batch] * steps), steps, opt, lambda _s: 1e-4)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def measure(
    model: str, repeats: int, steps: int, batch_size: int, threads: int, joint: bool, quick: bool
) -> dict:
    torch.set_num_threads(threads)
    L.seed_everything(0, verbose=False)
    fabric = L.Fabric(accelerator="cpu", devices=1, precision="32-true")
    fabric.launch()
    order = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        variants, public = build_variants(model, Path(tmp), joint)
        batch = next(iter(variants.values())).engine.collator(public[:batch_size])
        opts = {k: m.configure_optimizers() for k, m in variants.items()}
        wall: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        for k, m in variants.items():  # warm-up: allocator, first-call costs
            time_steps(fabric, m, batch, 2, opts[k])
        for _ in range(repeats):
            names = list(variants)
            order.shuffle(names)  # no variant always runs right after a given other one
            for k in names:
                w, c = time_steps(fabric, variants[k], batch, steps, opts[k])
                wall[k].append(w)
                cpu[k].append(c)
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    out = {
        "model": model,
        "batch_size": batch_size,
        "tokens_per_batch": int(batch["input_ids"].numel()),
        "steps_per_repeat": steps,
        "repeats": repeats,
        "threads": threads,
        "quick": quick,
        "step_cpu_ms": {k: round(1000 * v, 1) for k, v in med_cpu.items()},
        "step_wall_ms": {k: round(1000 * v, 1) for k, v in med_wall.items()},
    }
    pairs = {"vs_lora": ("mole_n8", "lora"), "n12_vs_n2": ("mole_n12", "mole_n2")}
    if joint:
        pairs["vs_lora_joint"] = ("mole_n8_joint", "lora")
        pairs["n12_vs_n2_joint"] = ("mole_n12_joint", "mole_n2_joint")
    for name, (a, b) in pairs.items():
        out[f"step_ratio_{name}"] = round(med_cpu[a] / med_cpu[b], 4)
        out[f"step_ratio_{name}_wall"] = round(med_wall[a] / med_wall[b], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="tiny_vlm_base")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="train steps per timed block")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time = work)")
    ap.add_argument("--joint", action="store_true", help="also time V1 (joint) steps")
    args = parse_args(ap, QUICK)
    out = measure(
        args.model, args.repeats, args.steps, args.batch_size, args.threads, args.joint, args.quick
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
