"""Evaluation generation speed: batched (left-padded, KV cache) vs one sample at a time.

Prints one JSON line:
  batched_speedup   samples/s of batched generation (``--batch-size``, default 16) over
                    samples/s of one-by-one generation, same samples, same greedy settings,
                    median of ``--repeats`` interleaved repeats in this process;
  same_predictions  whether both ways produced exactly the same texts (left padding must not
                    change a greedy answer).

The model is ``tiny_vlm_base`` at random initialisation (no pretraining needed to measure
cost) with LoRA adapters on q,k,v,up,down_proj, as evaluation runs it; the samples are the
``--task`` client's test split of a small ``fedmed_synth``.

One torch thread by default: on a shared, oversubscribed machine two OpenMP threads make the
many small ops of one-by-one decoding wait at barriers, which inflates the ratio (31x measured
that way against 3.6x with one thread, same machine and hour); one thread is the conservative
measurement. ``--threads 2`` on an idle 2-core machine measures the lab laptop's setting.

    python benchmarks/bench_eval.py [--model tiny_vlm_base] [--task report] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from _common import TARGETS, parse_args, random_engine, synth_benchmark

from fedmllm.federation.evaluation import generate_all
from fedmllm.methods import LoRAMethod

QUICK = {"model": "tiny_vlm", "num_samples": 4, "batch_size": 2, "max_new_tokens": 4, "repeats": 1}


def _setup(model: str, task: str, num_samples: int, cache: Path) -> tuple[Any, list[Any]]:
    """A LoRA method on a randomly initialised engine and ``num_samples`` test samples."""
    L.seed_everything(0, verbose=False)
    bench = synth_benchmark(cache, public_size=64, test_size=num_samples)
    engine = random_engine(model, bench.public, cache)
    method = LoRAMethod(engine, TARGETS, r=8, alpha=16, dropout=0.05)
    method.eval()
    samples = next(c.test for c in bench.clients if c.task == task)
    return method, samples


def _timed(method: Any, samples: list[Any], batch_size: int, max_new: int) -> tuple[float, list]:
    collator = method.engine.gen_collator
    t = time.perf_counter()
    preds = generate_all(method, collator, samples, batch_size, max_new)
    return time.perf_counter() - t, preds


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="tiny_vlm_base")
    ap.add_argument("--task", default="report", choices=["vqa", "report", "detection"])
    ap.add_argument("--num-samples", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = parse_args(ap, QUICK)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        method, samples = _setup(args.model, args.task, args.num_samples, Path(tmp))
        _timed(method, samples[: args.batch_size], args.batch_size, 4)  # warm-up both paths
        _timed(method, samples[:2], 1, 4)
        batched_t, single_t, same = [], [], True
        for _ in range(args.repeats):
            t, batched = _timed(method, samples, args.batch_size, args.max_new_tokens)
            batched_t.append(t)
            t, single = _timed(method, samples, 1, args.max_new_tokens)
            single_t.append(t)
            same = same and batched == single
    n = len(samples)
    batched_rate, single_rate = n / statistics.median(batched_t), n / statistics.median(single_t)
    print(
        json.dumps(
            {
                "model": args.model,
                "task": args.task,
                "num_samples": n,
                "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens,
                "threads": args.threads,
                "repeats": args.repeats,
                "batched_samples_per_s": round(batched_rate, 3),
                "single_samples_per_s": round(single_rate, 3),
                "batched_speedup": round(batched_rate / single_rate, 3),
                "same_predictions": same,
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
