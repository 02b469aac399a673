"""Per-client statistics of a benchmark: sizes, tasks, modalities, answer mix and divergence.

Pure functions over ``ClientData``; ``fedmllm.data.inspect`` prints them and draws examples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from fedmllm.data.schema import ClientData, Sample


def js_divergence(p: Counter, q: Counter) -> float:
    """Jensen-Shannon divergence of two count tables, in bits (0: equal, 1: disjoint)."""
    np_, nq = sum(p.values()), sum(q.values())
    if not np_ or not nq:
        return float("nan")
    total = 0.0
    for key in set(p) | set(q):
        a, b = p.get(key, 0) / np_, q.get(key, 0) / nq
        m = (a + b) / 2
        if a:
            total += 0.5 * a * math.log2(a / m)
        if b:
            total += 0.5 * b * math.log2(b / m)
    return total


def answer_counts(samples: Sequence[Sample], task: str) -> Counter:
    """What a client's "answer distribution" is made of: the answers themselves for VQA, the
    words of the answers for reports (report texts are all different), nothing for boxes."""
    if task == "vqa":
        return Counter(s.answer.strip().lower() for s in samples)
    if task == "report":
        return Counter(w for s in samples for w in s.answer.lower().split())
    return Counter()


def client_stats(client: ClientData, top: int = 5) -> dict[str, Any]:
    """Sizes, modalities, closed/open ratio and top answers of one client's train split."""
    train = client.train
    kinds = Counter(s.answer_type for s in train if s.answer_type)
    counts = answer_counts(train, client.task)
    n = sum(counts.values())
    return {
        "client": client.client_id,
        "task": client.task,
        "modality": client.modality,
        "train": len(train),
        "test": len(client.test),
        "modalities": dict(Counter(s.modality for s in train).most_common()),
        "closed_share": kinds["closed"] / sum(kinds.values()) if kinds else None,
        "top_answers": [(a, c / n) for a, c in counts.most_common(top)]
        if client.task == "vqa"
        else [],
        "distinct_answers": len(counts) if client.task == "vqa" else None,
    }


def divergence_matrix(clients: Sequence[ClientData]) -> dict[tuple[str, str], float]:
    """Pairwise JS divergence (bits) of the train answer distributions of same-task clients."""
    tables = {c.client_id: (c.task, answer_counts(c.train, c.task)) for c in clients}
    out = {}
    ids = list(tables)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            (ta, pa), (tb, pb) = tables[a], tables[b]
            if ta == tb and pa and pb:
                out[(a, b)] = js_divergence(pa, pb)
    return out


def mean_divergence(clients: Sequence[ClientData]) -> dict[str, float]:
    """Each client's mean JS divergence to the other clients of its task."""
    pairs = divergence_matrix(clients)
    sums: dict[str, list[float]] = {}
    for (a, b), value in pairs.items():
        sums.setdefault(a, []).append(value)
        sums.setdefault(b, []).append(value)
    return {c: sum(v) / len(v) for c, v in sums.items()}
