"""Index splits behind the partitions: IID chunks, quantity skew, Dirichlet label skew.

Pure functions of their inputs and a ``numpy`` generator, so a partition is reproducible from
its seed (``fedmllm.data.partition`` turns them into clients).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iid_split(n: int, sizes: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation of ``range(n)`` cut into consecutive chunks of ``sizes``."""
    if sum(sizes) != n:
        raise ValueError(f"sizes {list(sizes)} do not add up to {n}")
    order = rng.permutation(n)
    cuts = np.cumsum(sizes)[:-1]
    return [np.sort(part) for part in np.split(order, cuts)]


def even_sizes(n: int, k: int) -> list[int]:
    """``n`` items over ``k`` clients as evenly as possible (the first get the remainder)."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def quantity_sizes(
    n: int, k: int, beta: float, min_size: int, rng: np.random.Generator, max_tries: int = 1000
) -> list[int]:
    """Client sizes proportional to a Dirichlet(beta) draw, each at least ``min_size``.

    The draw is repeated until every client gets ``min_size``; rounding uses largest
    remainders, so the sizes add up to ``n`` exactly.
    """
    if k * min_size > n:
        raise ValueError(f"cannot give {k} clients {min_size} samples each from {n}")
    for _ in range(max_tries):
        sizes = round_shares(rng.dirichlet(np.full(k, beta)), n)
        if min(sizes) >= min_size:
            return sizes
    raise ValueError(
        f"quantity skew beta={beta}: no draw in {max_tries} gave every one of {k} clients "
        f"{min_size} of {n} samples; raise benchmark.partition.quantity_beta or lower "
        "benchmark.partition.min_train"
    )


def round_shares(shares: np.ndarray, n: int) -> list[int]:
    """Integer counts proportional to ``shares`` adding up to ``n`` (largest remainders)."""
    raw = shares * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def dirichlet_split(
    labels: Sequence[str],
    k: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 1,
    max_tries: int = 1000,
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Label-skewed split: class ``c`` divided over clients by ``p_c ~ Dirichlet(alpha)``.

    Args:
        labels: The label of every item.
        k: Number of clients.
        alpha: Concentration (``> 0``); smaller gives fewer classes per client.
        rng: Source of randomness.
        min_size: Redraw until every client holds at least this many items.
        max_tries: Give up (``ValueError``) after this many draws.

    Returns:
        The sorted item indices of each client, and ``p_c`` for every class.
    """
    labels_arr = np.asarray(labels, dtype=object)
    classes = sorted(set(labels_arr.tolist()))
    by_class = {c: np.flatnonzero(labels_arr == c) for c in classes}
    for _ in range(max_tries):
        props = {c: rng.dirichlet(np.full(k, alpha)) for c in classes}
        parts = allocate(by_class, props, rng, k)
        if min(len(p) for p in parts) >= min_size:
            return parts, props
    raise ValueError(
        f"dirichlet alpha={alpha}: no draw in {max_tries} gave every one of {k} clients "
        f"{min_size} of {len(labels_arr)} samples; raise benchmark.partition.alpha or lower "
        "benchmark.partition.min_train"
    )


def allocate(
    by_class: dict[str, np.ndarray],
    props: dict[str, np.ndarray],
    rng: np.random.Generator,
    k: int,
) -> list[np.ndarray]:
    """Shuffle each class and cut it by its client shares (largest-remainder rounding)."""
    parts: list[list[int]] = [[] for _ in range(k)]
    for c, idx in by_class.items():
        counts = round_shares(props[c], len(idx))
        chunks = np.split(rng.permutation(idx), np.cumsum(counts)[:-1])
        for client, chunk in enumerate(chunks):
            parts[client].extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=int)) for p in parts]


def ensure_min(
    parts: list[np.ndarray], prefer: list[str | None], labels: Sequence[str], min_size: int
) -> list[np.ndarray]:
    """Move items from the largest parts to parts below ``min_size``, preferring the class
    ``prefer[i]`` (the client's most frequent train answer) so label skew is kept."""
    lists = [list(p) for p in parts]
    for i in range(len(lists)):
        while len(lists[i]) < min_size:
            donors = [j for j in range(len(lists)) if len(lists[j]) > min_size]
            if not donors:
                raise ValueError(f"cannot give every client {min_size} test samples")
            take = None
            for j in sorted(donors, key=lambda j: -len(lists[j])):
                hits = [x for x in lists[j] if labels[x] == prefer[i]]
                if hits:
                    take = (j, hits[0])
                    break
            if take is None:
                j = max(donors, key=lambda j: len(lists[j]))
                take = (j, lists[j][0])
            lists[take[0]].remove(take[1])
            lists[i].append(take[1])
    return [np.sort(np.asarray(p, dtype=int)) for p in lists]
