"""Client clustering for FedLEASE: cosine distances, average-linkage agglomeration, silhouette.

Pure functions of small tensors (n clients is tens at most), written out in full so that each
step can be checked by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def cosine_distances(features: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """``D[i, j] = mean over layers l of (1 − cos(F_i^l, F_j^l))`` with flattened tensors.

    Args:
        features: Per client, the same list of tensors (e.g. its B matrix of every layer).
            A layer that is all zeros has cosine 0 with everything (distance 1).

    Returns:
        A symmetric (n, n) float64 matrix with a zero diagonal.
    """
    n = len(features)
    if n == 0:
        raise ValueError("no clients to compare")
    num_layers = len(features[0])
    if num_layers == 0 or any(len(f) != num_layers for f in features):
        raise ValueError("every client needs the same, non-empty list of tensors")
    dist = torch.zeros(n, n, dtype=torch.float64)
    for layer in range(num_layers):
        x = torch.stack([f[layer].reshape(-1).to(torch.float64) for f in features])
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
        dist += 1.0 - x @ x.T
    dist /= num_layers
    dist = (dist + dist.T) / 2
    dist.fill_diagonal_(0.0)
    return dist.clamp_(min=0.0)


def _canonical(clusters: list[list[int]], n: int) -> list[int]:
    """Labels numbered by each cluster's smallest member, so results do not depend on merges."""
    labels = [0] * n
    for j, members in enumerate(sorted(clusters, key=min)):
        for i in members:
            labels[i] = j
    return labels


def agglomerative(dist: torch.Tensor, num_clusters: int) -> list[int]:
    """Average-linkage agglomerative clustering of a precomputed distance matrix.

    Repeatedly merges the two clusters with the smallest mean pairwise distance (the first
    such pair in index order on ties) until ``num_clusters`` remain.

    Returns:
        One label per point; cluster j is the one whose smallest member is j-th smallest.
    """
    n = dist.shape[0]
    if not 1 <= num_clusters <= n:
        raise ValueError(f"num_clusters must be in [1, {n}], got {num_clusters}")
    clusters = [[i] for i in range(n)]
    while len(clusters) > num_clusters:
        best: tuple[float, int, int] | None = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                d = dist[clusters[a]][:, clusters[b]].mean().item()
                if best is None or d < best[0]:
                    best = (d, a, b)
        assert best is not None
        _, a, b = best
        clusters[a] = clusters[a] + clusters.pop(b)
    return _canonical(clusters, n)


def silhouette(dist: torch.Tensor, labels: Sequence[int]) -> float:
    """Mean silhouette ``(b − a) / max(a, b)`` (a point alone in its cluster scores 0).

    Raises:
        ValueError: Fewer than 2 or more than n − 1 clusters (the score is undefined).
    """
    n = dist.shape[0]
    ids = sorted(set(labels))
    if not 2 <= len(ids) <= n - 1:
        raise ValueError(f"silhouette needs 2..{n - 1} clusters, got {len(ids)}")
    members = {j: [i for i in range(n) if labels[i] == j] for j in ids}
    total = 0.0
    for i in range(n):
        own = [m for m in members[labels[i]] if m != i]
        if not own:
            continue
        a = dist[i, own].mean().item()
        b = min(dist[i, members[j]].mean().item() for j in ids if j != labels[i])
        denom = max(a, b)
        total += 0.0 if denom == 0 else (b - a) / denom
    return total / n


def choose_clusters(dist: torch.Tensor, max_clusters: int) -> tuple[list[int], dict[int, float]]:
    """Cluster with the count in ``2..min(max_clusters, n − 1)`` of best silhouette.

    Ties go to fewer clusters. With fewer than 3 points, or ``max_clusters < 2``, the
    silhouette is undefined and everything forms one cluster.

    Returns:
        The labels and the silhouette of every count tried.
    """
    n = dist.shape[0]
    top = min(max_clusters, n - 1)
    if top < 2:
        return [0] * n, {}
    scores: dict[int, float] = {}
    best: tuple[float, list[int]] | None = None
    for k in range(2, top + 1):
        labels = agglomerative(dist, k)
        scores[k] = silhouette(dist, labels)
        if best is None or scores[k] > best[0]:
            best = (scores[k], labels)
    assert best is not None
    return best[1], scores
