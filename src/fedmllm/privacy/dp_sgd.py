"""DP-SGD's per-sample clipping and Gaussian noise (Abadi et al., 2016), as pure tensor maths.

One step: every sample's gradient g_i (over the parameters that train this step) is scaled to
norm at most C, ``g_i · min(1, C / (‖g_i‖ + 1e-6))`` (Opacus's factor); the clipped gradients are
summed, Gaussian noise N(0, (σC)²) is added to every coordinate of the sum, and the result is
divided by the expected batch size. The local step that computes the g_i for any adapter family
is ``fedmllm.methods.dp_sgd_addon``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

EPS = 1e-6
"""Added to the norm before dividing, as Opacus's optimiser does."""


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The l2 norm of the concatenation of ``tensors`` (float64)."""
    if not tensors:
        return torch.zeros((), dtype=torch.float64)
    return torch.sqrt(sum(t.detach().double().pow(2).sum() for t in tensors))


def clip_factor(norm: torch.Tensor | float, clip: float) -> float:
    """``min(1, C / (norm + 1e-6))``: the scale that bounds a gradient's norm by C."""
    return float(min(1.0, clip / (float(norm) + EPS)))


def accumulate_clipped(
    total: list[torch.Tensor], grads: Sequence[torch.Tensor], clip: float
) -> float:
    """Add one sample's gradients, clipped to norm ``clip``, into ``total`` in place.

    Returns:
        The sample gradient's norm before clipping.
    """
    norm = global_norm(grads)
    scale = clip_factor(norm, clip)
    for acc, g in zip(total, grads, strict=True):
        acc.add_(g.detach().to(acc.dtype), alpha=scale)
    return float(norm)


def add_gaussian_noise(
    total: list[torch.Tensor], std: float, generator: torch.Generator | None = None
) -> None:
    """Add N(0, std²) to every coordinate of ``total`` in place (no-op for std 0)."""
    if std <= 0:
        return
    for acc in total:
        noise = torch.randn(acc.shape, generator=generator, dtype=torch.float32, device="cpu")
        acc.add_(noise.to(acc.device, acc.dtype), alpha=std)


def private_gradient(
    per_sample: Sequence[Sequence[torch.Tensor]],
    clip: float,
    noise_multiplier: float,
    expected_batch: int,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """``(Σ_i clip_C(g_i) + N(0, (σC)²)) / B`` for per-sample gradients ``per_sample[i]``."""
    if not per_sample:
        raise ValueError("DP-SGD needs at least one sample gradient")
    total = [torch.zeros_like(g, dtype=torch.float32) for g in per_sample[0]]
    for grads in per_sample:
        accumulate_clipped(total, grads, clip)
    add_gaussian_noise(total, noise_multiplier * clip, generator)
    return [t / expected_batch for t in total]


def batch_size_of(batch: dict[str, Any]) -> int:
    """The number of samples in a collated batch (the first dimension of ``input_ids``)."""
    ids = batch.get("input_ids")
    if not isinstance(ids, torch.Tensor):
        raise ValueError("DP-SGD needs batches with an input_ids tensor to split into samples")
    return int(ids.shape[0])


def one_sample(batch: dict[str, Any], i: int, n: int) -> dict[str, Any]:
    """Sample ``i`` of a collated batch of ``n``: tensors and lists of length ``n`` sliced."""
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n:
            out[k] = v[i : i + 1]
        elif isinstance(v, (list, tuple)) and len(v) == n:
            out[k] = type(v)([v[i]]) if isinstance(v, list) else (v[i],)
        else:
            out[k] = v
    return out
