"""Pure maths of the Byzantine-robust rules, on a (K, D) matrix of flattened client states.

Definitions follow the papers (and agree with ``flwr.server.strategy.aggregate``, which the
tests check): coordinate-wise median and β-trimmed mean (Yin et al., 2018), Krum and
multi-Krum (Blanchard et al., 2017), Bulyan (El Mhamdi et al., 2018) and the norm-bounded
mean (Sun et al., 2019). Distances are squared Euclidean; ``product_distances`` measures
LoRA pairs by their products ``B·A`` instead of their factors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmllm.types import AdapterState


def flatten(states: Sequence[AdapterState], keys: Sequence[str]) -> torch.Tensor:
    """A (K, D) float64 matrix: row k is state k's ``keys`` flattened and concatenated."""
    rows = [torch.cat([s[k].detach().reshape(-1).to(torch.float64) for k in keys]) for s in states]
    return torch.stack(rows)


def unflatten(vec: torch.Tensor, template: AdapterState, keys: Sequence[str]) -> AdapterState:
    """Inverse of :func:`flatten` for one row, in ``template``'s shapes and dtypes."""
    out: AdapterState = {}
    i = 0
    for k in keys:
        t = template[k]
        out[k] = vec[i : i + t.numel()].reshape(t.shape).to(t.dtype)
        i += t.numel()
    return out


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(K, K) squared Euclidean distances between the rows of ``x`` (exact differences, one row
    at a time: K·D memory, not K²·D)."""
    out = torch.empty(x.shape[0], x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(x.shape[0]):
        diff = x - x[i]
        out[i] = (diff * diff).sum(-1)
    return out


def product_distances(
    states: Sequence[AdapterState], pairs: Sequence[tuple[str, str]], others: Sequence[str]
) -> torch.Tensor:
    """(K, K) squared distances with each LoRA pair measured as ``‖B_i A_i − B_j A_j‖²_F``.

    Keys outside a pair add their plain squared distance.
    """
    k = len(states)
    dist = torch.zeros(k, k, dtype=torch.float64)
    for a_key, b_key in pairs:
        prods = [
            (s[b_key].to(torch.float64) @ s[a_key].to(torch.float64)).reshape(-1) for s in states
        ]
        dist += squared_distances(torch.stack(prods))
    if others:
        dist += squared_distances(flatten(states, others))
    return dist


def coordinate_median(x: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of the rows (mean of the two middle values for even K)."""
    s = x.sort(dim=0).values
    n = s.shape[0]
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def trimmed_mean(x: torch.Tensor, trim: float) -> torch.Tensor:
    """Coordinate-wise mean after dropping the ``floor(trim·K)`` largest and smallest values."""
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    n = x.shape[0]
    cut = int(trim * n)
    return x.sort(dim=0).values[cut : n - cut].mean(0)


def krum_scores(dist: torch.Tensor, f: int) -> torch.Tensor:
    """Krum score of each row: the sum of its ``K − f − 2`` (at least 1) smallest distances to
    the other rows."""
    n = dist.shape[0]
    m = max(1, n - f - 2)
    eye = torch.eye(n, dtype=torch.bool)
    others = dist.masked_fill(eye, float("inf")).sort(dim=1).values
    return others[:, :m].sum(1)


def krum_select(dist: torch.Tensor, f: int, m: int) -> list[int]:
    """Indices of the ``m`` rows of lowest Krum score (ties: the lower index)."""
    scores = krum_scores(dist, f)
    return [int(i) for i in torch.sort(scores, stable=True).indices[:m]]


def bulyan_select(dist: torch.Tensor, f: int) -> list[int]:
    """Bulyan's selection: Krum applied ``K − 2f`` times, each time on the rows not yet chosen.

    Raises:
        ValueError: K < 4f + 3 (the rule's assumption).
    """
    n = dist.shape[0]
    if n < 4 * f + 3:
        raise ValueError(
            f"Bulyan needs at least 4f+3 = {4 * f + 3} clients per round for f={f} "
            f"(aggregator.num_malicious), got {n}: lower num_malicious or use "
            "aggregator=krum, median or trimmed_mean"
        )
    left = list(range(n))
    chosen: list[int] = []
    for _ in range(n - 2 * f):
        sub = dist[left][:, left]
        best = left[krum_select(sub, f, 1)[0]]
        chosen.append(best)
        left.remove(best)
    return chosen


def bulyan_combine(x: torch.Tensor, f: int) -> torch.Tensor:
    """Bulyan's second step on the selected rows: per coordinate, the mean of the
    ``θ − 2f`` values closest to the coordinate-wise median (θ = number of rows)."""
    beta = x.shape[0] - 2 * f
    med = coordinate_median(x)
    idx = (x - med).abs().sort(dim=0, stable=True).indices[:beta]
    return torch.gather(x, 0, idx).mean(0)


def clip_factors(deltas: torch.Tensor, norms: torch.Tensor, bound: float) -> torch.Tensor:
    """``min(1, bound / ‖Δ_k‖)`` per row given the rows' norms (0-norm rows: 1)."""
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    return torch.clamp(bound / safe, max=1.0)
