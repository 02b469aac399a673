"""Heterogeneous LoRA ranks: truncate factors to a client's rank, zero-pad them back.

A client of rank ``r_k`` on an engine allocated at ``r_max`` uses the first ``r_k`` rows of
every ``lora_A`` (r×d_in) and the first ``r_k`` columns of every ``lora_B`` (d_out×r); the rest
is zero. On the wire it sends true-size factors, so truncation and padding are the only two
operations needed, and both are exact.
"""

from __future__ import annotations

import math

import torch

from fedmllm.types import AdapterState

A_SUFFIX = "lora_A.weight"
B_SUFFIX = "lora_B.weight"


def lora_scaling(alpha: float, rank: int, use_rslora: bool = False) -> float:
    """``alpha / r`` (rsLoRA: ``alpha / sqrt(r)``): the scaling a rank-``rank`` client uses."""
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


def factor_rank(key: str, tensor: torch.Tensor) -> int | None:
    """Rank of a LoRA factor from its shape (rows of A, columns of B); ``None`` for other keys."""
    if key.endswith(A_SUFFIX):
        return int(tensor.shape[0])
    if key.endswith(B_SUFFIX):
        return int(tensor.shape[1])
    return None


def truncate_rank(state: AdapterState, rank: int) -> AdapterState:
    """The first ``rank`` components of every LoRA factor; other keys pass through.

    Raises:
        ValueError: ``rank`` is not positive, or a factor has fewer than ``rank`` components.
    """
    if rank <= 0:
        raise ValueError(f"rank must be positive, got {rank}")
    out: AdapterState = {}
    for key, t in state.items():
        have = factor_rank(key, t)
        if have is None:
            out[key] = t
            continue
        if have < rank:
            raise ValueError(f"{key} has rank {have}, cannot take its first {rank} components")
        out[key] = t[:rank].clone() if key.endswith(A_SUFFIX) else t[:, :rank].clone()
    return out


def pad_rank(state: AdapterState, rank: int) -> AdapterState:
    """Zero-pad every LoRA factor of smaller rank up to ``rank``; other keys pass through.

    Raises:
        ValueError: A factor has more than ``rank`` components.
    """
    out: AdapterState = {}
    for key, t in state.items():
        have = factor_rank(key, t)
        if have is None or have == rank:
            out[key] = t
            continue
        if have > rank:
            raise ValueError(f"{key} has rank {have}, more than the engine's {rank}")
        if key.endswith(A_SUFFIX):
            padded = t.new_zeros((rank, t.shape[1]))
            padded[:have] = t
        else:
            padded = t.new_zeros((t.shape[0], rank))
            padded[:, :have] = t
        out[key] = padded
    return out
