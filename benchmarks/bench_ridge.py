"""FedA²-LoRA's factored ridge solve against the paper's dense formulation.

Prints one JSON line:
  speedup_vs_dense   median CPU time of the paper's route (form U = Σ w_k B_k A_k as a d_out×d_in
                     matrix, then B = U Aᵀ (A Aᵀ)⁻¹) over the median time of
                     ``fedmllm.aggregators.lowrank.ridge_factors`` (``U Aᵀ = Σ w_k B_k (A_k Aᵀ)``),
                     both on the same float32 inputs, interleaved in this process;
                     speedup_vs_dense_wall: the same with wall-clock medians (inflated or
                     deflated by other users' jobs on a shared machine);
  max_rel_err        max |B_ours − B_dense| / max |B_dense|, conditional mode (λ dropped: A Aᵀ is
                     well conditioned here); max_rel_err_ridge: the same with λ = 1 in both;
  err_vs_fp64_*      the same measure of each float32-input result against a float64 dense one;
  peak_extra_mb      peak bytes of tensors allocated during one call of ours (inputs excluded,
                     outputs included), counted op by op with a TorchDispatchMode that follows
                     every new storage until it is freed; dense_peak_extra_mb: the same meter on
                     the dense route (it must see the 64 MB matrix U);
  peak_extra_rss_mb  cross-check by the OS: rise of the resident-set high-water mark during one
                     first (cold) call in a fresh child process (includes lazy library set-up).

Defaults: d_in = d_out = 4096, r = 8, K = 10, float32, CPU, one torch thread. One thread
because on a shared or busy machine a multi-threaded BLAS waits for a free core in every
parallel region, which distorts both routes by amounts that depend on the load; pass
``--threads 2`` on an idle two-core machine to time both with two.

    python benchmarks/bench_ridge.py [--d 4096] [--r 8] [--k 10] [--repeats 9] [--threads 1]
    python benchmarks/bench_ridge.py --quick   # seconds; checks that it runs, measures nothing
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import parse_args
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from fedmllm.aggregators.lowrank import ridge_factors

MB = 2**20
QUICK = {"d": 64, "k": 3, "repeats": 1}


def make_inputs(d: int, r: int, k: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    """K clients that started from one global A (PEFT's Kaiming scale) and drifted apart."""
    g = torch.Generator().manual_seed(seed)
    bound = 1.0 / d**0.5
    a0 = (torch.rand(r, d, generator=g, dtype=torch.float64) * 2 - 1) * bound
    a_list = [
        (a0 + 0.3 * bound * torch.randn(r, d, generator=g, dtype=torch.float64)).to(dtype)
        for _ in range(k)
    ]
    b_list = [
        (0.01 * torch.randn(d, r, generator=g, dtype=torch.float64)).to(dtype) for _ in range(k)
    ]
    counts = torch.randint(50, 500, (k,), generator=g).to(torch.float64)
    weights = (counts / counts.sum()).tolist()
    return a_list, b_list, weights


def dense_paper(a_list, b_list, weights, lam: float = 0.0) -> torch.Tensor:
    """The paper's route in the inputs' dtype: U formed densely (in place, no per-client temp)."""
    a = sum(w * a_k for a_k, w in zip(a_list, weights, strict=True))
    u = torch.zeros(b_list[0].shape[0], a_list[0].shape[1], dtype=a_list[0].dtype)
    for a_k, b_k, w in zip(a_list, b_list, weights, strict=True):
        u.addmm_(b_k, a_k, alpha=w)
    gram = a @ a.T + lam * torch.eye(a.shape[0], dtype=a.dtype)
    # B gram = U Aᵀ  ⇔  gram Bᵀ = (U Aᵀ)ᵀ; the same solver as ours, so only U's route differs.
    return torch.linalg.solve(gram, (u @ a.T).T).T


def ours(a_list, b_list, weights, lam: float = 1.0, mode: str = "conditional") -> torch.Tensor:
    return ridge_factors(a_list, b_list, weights, lam=lam, mode=mode).b.to(a_list[0].dtype)


class TensorPeak(TorchDispatchMode):
    """Peak bytes of live storages created by aten ops inside the ``with`` block."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for ptr in [p for p, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(ptr)[1]
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr not in self.live and storage.nbytes() > 0 and not _is_input(ptr):
                    self.live[ptr] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


_INPUT_PTRS: set[int] = set()


def _is_input(ptr: int) -> bool:
    return ptr in _INPUT_PTRS


def tensor_peak_mb(fn, *inputs) -> float:
    """:class:`TensorPeak` around one call (the inputs' storages are not counted)."""
    _INPUT_PTRS.clear()
    _INPUT_PTRS.update(t.untyped_storage().data_ptr() for group in inputs[:2] for t in group)
    with TensorPeak() as meter:
        result = fn(*inputs)
    del result
    return meter.peak / MB


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_rss(which: str, d: int, r: int, k: int, threads: int) -> float:
    """In a fresh process: rise of VmHWM over VmRSS during one cold call, in MB."""
    torch.set_num_threads(threads)
    inputs = make_inputs(d, r, k)
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    before = _status_kb("VmRSS")
    out = (ours if which == "ours" else dense_paper)(*inputs)
    peak = _status_kb("VmHWM")
    del out
    return (peak - before) / 1024


def _rss_in_child(which: str, args: argparse.Namespace) -> float | None:
    cmd = [sys.executable, __file__, "--child-rss", which, "--d", str(args.d), "--r", str(args.r)]
    cmd += ["--k", str(args.k), "--threads", str(args.threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    except (subprocess.CalledProcessError, OSError):  # no /proc (not Linux): cross-check skipped
        return None
    return round(float(done.stdout.strip().splitlines()[-1]), 2)


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref.double()).abs().max() / ref.double().abs().max())


def _timed(fn, inputs, cpu_clock) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    w0, c0 = time.perf_counter(), cpu_clock()
    fn(*inputs)
    return time.perf_counter() - w0, cpu_clock() - c0


def timings(inputs, repeats: int, threads: int) -> dict[str, float]:
    """Medians of wall and CPU time of both routes, calls interleaved (dense, ours ×5, ...).

    The CPU clock is the calling thread's (torch runs every kernel on it with one thread), or
    the process's with more threads; it does not advance while other users' jobs hold the
    core, which the wall clock does.
    """
    cpu_clock = time.thread_time if threads == 1 else time.process_time
    dense, mine = [], []
    for _ in range(repeats):
        dense.append(_timed(dense_paper, inputs, cpu_clock))
        mine.extend(_timed(ours, inputs, cpu_clock) for _ in range(5))
    med = {
        name: [statistics.median(t[i] for t in runs) for i in (0, 1)]
        for name, runs in (("dense", dense), ("ours", mine))
    }
    return {
        "dense_ms": round(med["dense"][0] * 1e3, 3),
        "ours_ms": round(med["ours"][0] * 1e3, 3),
        "dense_cpu_ms": round(med["dense"][1] * 1e3, 3),
        "ours_cpu_ms": round(med["ours"][1] * 1e3, 3),
        "speedup_vs_dense": round(med["dense"][1] / med["ours"][1], 1),
        "speedup_vs_dense_wall": round(med["dense"][0] / med["ours"][0], 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=4096)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child-rss", choices=["ours", "dense"], default=None, help=argparse.SUPPRESS)
    args = parse_args(p, QUICK)
    if args.child_rss:
        print(child_rss(args.child_rss, args.d, args.r, args.k, args.threads))
        return
    torch.set_num_threads(args.threads)
    inputs = make_inputs(args.d, args.r, args.k)
    b_ours, b_dense = ours(*inputs), dense_paper(*inputs)  # also the warm-up of both
    a64, b64, w = make_inputs(args.d, args.r, args.k, dtype=torch.float64)
    b_exact = dense_paper(a64, b64, w)
    result = {
        "bench": "ridge",
        "d_in": args.d,
        "d_out": args.d,
        "r": args.r,
        "K": args.k,
        "dtype": "float32",
        "threads": args.threads,
        "repeats": args.repeats,
        **timings(inputs, args.repeats, args.threads),
        "max_rel_err": _rel(b_ours, b_dense),
        "max_rel_err_ridge": _rel(
            ours(*inputs, lam=1.0, mode="tikhonov"), dense_paper(*inputs, lam=1.0)
        ),
        "err_vs_fp64_ours": _rel(b_ours, b_exact),
        "err_vs_fp64_dense": _rel(b_dense, b_exact),
        "peak_extra_mb": round(tensor_peak_mb(ours, *inputs), 3),
        "dense_peak_extra_mb": round(tensor_peak_mb(dense_paper, *inputs), 3),
        "peak_extra_rss_mb": _rss_in_child("ours", args),
        "dense_peak_extra_rss_mb": _rss_in_child("dense", args),
        "one_dense_matrix_mb": args.d * args.d * 4 / MB,
        "quick": args.quick,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
