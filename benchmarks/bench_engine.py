"""Shared-engine costs: memory of many clients and overhead of the round loop.

Prints one JSON line:
  rss_ratio_32_vs_2  peak RSS of a 32-client vs a 2-client federation (same steps per client),
                     each measured in its own child process, on tiny_vlm_base;
  overhead_ratio     wall time of one federated round of K clients × S steps over K×S plain
                     training steps of the same model (no evaluation), median of repeats,
                     both measured in this process, interleaved.

    python benchmarks/bench_engine.py [--model tiny_vlm_base] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from _common import TARGETS, parse_args, random_engine, synth_benchmark

from fedmllm.aggregators import FedAvg
from fedmllm.federation import Client, FederationConfig, Simulator
from fedmllm.methods import LoRAMethod

QUICK = {"model": "tiny_vlm", "steps": 1, "batch_size": 1, "clients": 2, "repeats": 1, "threads": 1}


def _setup(model: str, num_clients: int, steps: int, batch_size: int, cache: Path):
    """Engine (random init: no pretraining needed to measure cost), method and K clients."""
    L.seed_everything(0, verbose=False)
    per_client = batch_size * steps
    bench = synth_benchmark(cache, public_size=num_clients * per_client, test_size=4)
    engine = random_engine(model, bench.public, cache)
    method = LoRAMethod(engine, TARGETS, r=8, alpha=16, dropout=0.05)
    clients = [
        Client(f"c{k}", s.task, bench.public[k * per_client : (k + 1) * per_client], [])
        for k, s in enumerate(bench.public[:num_clients])
    ]
    fabric = L.Fabric(accelerator="cpu", devices=1, precision="32-true")
    cfg = FederationConfig(
        rounds=1, local_steps=steps, batch_size=batch_size, eval_every=0, checkpoint=False, lr=1e-4
    )
    sim = Simulator(fabric, engine, method, FedAvg(), clients, cfg, cache / "run", eval_clients=[])
    return sim, fabric, method, engine, clients


def child_rss(model: str, num_clients: int, steps: int, batch_size: int, threads: int) -> float:
    """Peak RSS (MB) of one process that runs a one-round federation of ``num_clients``."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        sim, *_ = _setup(model, num_clients, steps, batch_size, Path(tmp))
        sim.run_round()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def overhead(model: str, num_clients: int, steps: int, batch_size: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sim, fabric, method, engine, clients = _setup(
            model, num_clients, steps, batch_size, Path(tmp)
        )
        optimizer = method.configure_optimizers()
        pooled = [s for c in clients for s in c.train]

        def plain() -> None:
            def batches():
                for b in range(num_clients * steps):
                    yield engine.collator(pooled[b * batch_size : (b + 1) * batch_size])

            method.local_update(fabric, batches(), num_clients * steps, optimizer, lambda i: 1e-4)

        fed_t, plain_t = [], []
        plain()  # warm-up both paths (allocator, first-call costs)
        sim.run_round()
        for _ in range(repeats):
            t = time.perf_counter()
            sim.run_round()
            fed_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            plain()
            plain_t.append(time.perf_counter() - t)
    return {
        "fed_round_s": statistics.median(fed_t),
        "plain_steps_s": statistics.median(plain_t),
        "overhead_ratio": statistics.median(fed_t) / statistics.median(plain_t),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="tiny_vlm_base")
    ap.add_argument("--steps", type=int, default=3, help="local steps per client")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--clients", type=int, default=8, help="K for the overhead measurement")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--child-rss", type=int, default=0, help=argparse.SUPPRESS)
    args = parse_args(ap, QUICK)
    if args.child_rss:
        print(child_rss(args.model, args.child_rss, args.steps, args.batch_size, args.threads))
        return
    torch.set_num_threads(args.threads)
    rss = {}
    for k in (2, 32):
        cmd = [
            sys.executable,
            __file__,
            "--model",
            args.model,
            "--steps",
            str(args.steps),
            "--batch-size",
            str(args.batch_size),
            "--threads",
            str(args.threads),
            "--child-rss",
            str(k),
        ]
        rss[k] = float(
            subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()[-1]
        )
    out = overhead(args.model, args.clients, args.steps, args.batch_size, args.repeats)
    print(
        json.dumps(
            {
                "model": args.model,
                "steps_per_client": args.steps,
                "batch_size": args.batch_size,
                "rss_mb_2": round(rss[2], 1),
                "rss_mb_32": round(rss[32], 1),
                "rss_ratio_32_vs_2": round(rss[32] / rss[2], 4),
                "overhead_clients": args.clients,
                "fed_round_s": round(out["fed_round_s"], 3),
                "plain_steps_s": round(out["plain_steps_s"], 3),
                "overhead_ratio": round(out["overhead_ratio"], 4),
                "repeats": args.repeats,
                "threads": args.threads,
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
