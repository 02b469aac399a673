"""Pure aggregation maths: functions of tensors, no state, no models.

Kept apart from the rule classes (as Flower's ``aggregate.py``) so every formula can be
tested on three small tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmllm.types import AdapterState


def client_weights(num_examples: Sequence[int], weighting: str = "samples") -> torch.Tensor:
    """Normalised aggregation weights.

    Args:
        num_examples: Each client's training-set size n_k.
        weighting: ``"samples"`` (w_k = n_k / Σ n) or ``"uniform"`` (w_k = 1/K).

    Returns:
        A float64 vector summing to one.
    """
    if len(num_examples) == 0:
        raise ValueError("cannot weight an empty set of clients")
    if weighting == "uniform":
        return torch.full((len(num_examples),), 1.0 / len(num_examples), dtype=torch.float64)
    if weighting != "samples":
        raise ValueError(f"weighting must be 'samples' or 'uniform', got {weighting!r}")
    n = torch.tensor([float(x) for x in num_examples], dtype=torch.float64)
    if (n < 0).any() or n.sum() <= 0:
        raise ValueError(
            f"sample counts must be non-negative with a positive sum, got {list(num_examples)}"
        )
    return n / n.sum()


def weighted_mean(states: Sequence[AdapterState], weights: torch.Tensor) -> AdapterState:
    """Key-wise ``Σ_k w_k · state_k`` over the keys every state holds.

    Accumulates in float64 so the order of clients does not change the result beyond
    the final cast, then casts back to each tensor's own dtype.
    """
    if len(states) != len(weights):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    keys = set(states[0])
    for s in states[1:]:
        if set(s) != keys:
            missing = sorted(keys.symmetric_difference(s))[:5]
            raise KeyError(f"clients sent different keys, e.g. {missing}")
    out: AdapterState = {}
    for key in states[0]:
        ref = states[0][key]
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for s, w in zip(states, weights, strict=True):
            if s[key].shape != ref.shape:
                raise ValueError(
                    f"shape mismatch for {key}: {tuple(s[key].shape)} vs {tuple(ref.shape)}"
                )
            acc += w.item() * s[key].to(torch.float64)
        out[key] = acc.to(ref.dtype)
    return out
