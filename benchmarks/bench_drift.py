"""Cost of the per-round drift diagnostics (``federation/drift.py``) on adapter-sized states.

Prints one JSON line: for each (adapter size, K clients), the median time of one
``drift_stats`` call (one thread) and the size of the buffers it keeps besides the states
(computed: Welford mean + M2 + mean update in float64, plus K float32 flattened updates for
the pairwise matrix while K ≤ 16). Compare the time with a round's wall time (``s / round``
of the report: ≈ 2–5 s for fedmed_synth's three clients on this CPU).

Sizes: ``tiny`` = the default fedmed_synth LoRA (36,864 parameters, r=8 on q,k,v,up,down);
``llava7b`` = r=8 on q,k,v,up,down of a 32-layer 4096/11008 LLaMA (14.0 M parameters).

    python benchmarks/bench_drift.py [--repeats 5] [--clients 3 10] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from _common import parse_args

from fedmllm.federation.drift import drift_stats

# One layer of the LLaVA-7B-sized adapter instead of 32: the same shapes, 1/32 of the work.
QUICK = {"repeats": 1, "llava_layers": 1}


def lora_shapes(layers: int, hidden: int, inter: int, r: int) -> dict[str, tuple[int, int]]:
    """A/B shapes of r-rank LoRA on q,k,v (h→h), up (h→i), down (i→h) of every layer."""
    shapes = {}
    for layer in range(layers):
        for name, (fan_in, fan_out) in {
            "q_proj": (hidden, hidden),
            "k_proj": (hidden, hidden),
            "v_proj": (hidden, hidden),
            "up_proj": (hidden, inter),
            "down_proj": (inter, hidden),
        }.items():
            key = f"model.layers.{layer}.{name}"
            shapes[f"{key}.lora_A.weight"] = (r, fan_in)
            shapes[f"{key}.lora_B.weight"] = (fan_out, r)
    return shapes


def measure(shapes: dict[str, tuple[int, int]], k: int, repeats: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    states = {
        str(i): {n: torch.randn(s, generator=g) * 0.01 for n, s in shapes.items()} for i in range(k)
    }
    ref = {n: torch.zeros(s) for n, s in shapes.items()}
    glob = {n: torch.zeros(s) for n, s in shapes.items()}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        drift_stats(lambda: iter(states.items()), glob, ref, pairwise_max=16)
        times.append(time.perf_counter() - t0)
    params = sum(a * b for a, b in shapes.values())
    buffers = 3 * 8 * params + (k * 4 * params if k <= 16 else 0)
    return {"params": params, "median_s": statistics.median(times), "buffer_mib": buffers / 2**20}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--clients", type=int, nargs="+", default=[3, 10])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--llava-layers", type=int, default=32, help="layers of the llava7b size")
    args = parse_args(p, QUICK)
    torch.set_num_threads(args.threads)
    sizes = {
        "tiny": lora_shapes(3, 128, 256, 8),
        "llava7b": lora_shapes(args.llava_layers, 4096, 11008, 8),
    }
    out: dict = {
        f"{name}_k{k}": measure(shapes, k, args.repeats if name == "tiny" else 1)
        for name, shapes in sizes.items()
        for k in args.clients
    }
    out["quick"] = args.quick
    print(json.dumps(out))


if __name__ == "__main__":
    main()
