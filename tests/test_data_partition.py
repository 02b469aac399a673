"""Tests of the heterogeneity controls (``fedmllm.data.partition``)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from fedmllm.data.partition import (
    PartitionConfig,
    Source,
    dirichlet_split,
    partition,
    quantity_sizes,
)
from fedmllm.data.schema import Sample

ANSWERS = ("yes", "no", "one", "two", "three", "left", "right", "cyst", "tumor", "liver")


def _source(name: str, n: int, seed: int, task: str = "vqa", modality: str = "ct") -> Source:
    """A pool whose answers cycle through ten classes with unequal frequencies."""
    rng = np.random.default_rng(seed)
    p = np.arange(1, len(ANSWERS) + 1, dtype=float)[::-1]
    labels = rng.choice(ANSWERS, size=n, p=p / p.sum())

    def sample(i: int, a: str, split: str) -> Sample:
        return Sample(None, modality, f"q {i}", str(a), task, meta={"id": f"{name}/{split}/{i}"})

    train = [sample(i, a, "train") for i, a in enumerate(labels)]
    test = [sample(i, a, "test") for i, a in enumerate(labels[: n // 4])]
    return Source(name, task, modality, train, test)


def _max_share(clients) -> float:
    """Mean over clients of the largest answer share: 1/classes when balanced, 1 when a client
    holds a single answer (computed here from the samples, not by the library)."""
    shares = []
    for c in clients:
        counts = Counter(s.answer for s in c.train)
        shares.append(max(counts.values()) / sum(counts.values()))
    return float(np.mean(shares))


def _mean_js(clients) -> float:
    """Mean pairwise Jensen-Shannon divergence (nats) of the clients' train answer
    distributions, written out from the definition."""
    dists = []
    for c in clients:
        counts = Counter(s.answer for s in c.train)
        total = sum(counts.values())
        dists.append([counts.get(a, 0) / total for a in ANSWERS])
    values = []
    for i in range(len(dists)):
        for j in range(i + 1, len(dists)):
            p, q = dists[i], dists[j]
            m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
            kl = lambda x, y: sum(a * math.log(a / b) for a, b in zip(x, y, strict=True) if a > 0)  # noqa: E731
            values.append(0.5 * kl(p, m) + 0.5 * kl(q, m))
    return float(np.mean(values))


def _ids(samples) -> list[str]:
    return [s.meta["id"] for s in samples]


def test_dirichlet_is_reproducible_and_a_true_partition() -> None:
    # Prepare
    pool = [_source("a", 400, 0)]
    cfg = {"scheme": "dirichlet", "num_clients": 6, "alpha": 0.3, "seed": 7}
    # Execute
    first, again = partition(pool, cfg), partition(pool, cfg)
    other = partition(pool, {**cfg, "seed": 8})
    # Assert
    assert [_ids(c.train) for c in first] == [_ids(c.train) for c in again]
    assert [_ids(c.test) for c in first] == [_ids(c.test) for c in again]
    assert [_ids(c.train) for c in first] != [_ids(c.train) for c in other]
    every = [i for c in first for i in _ids(c.train)]
    assert sorted(every) == sorted(_ids(pool[0].train))  # each sample exactly once
    every_test = [i for c in first for i in _ids(c.test)]
    assert sorted(every_test) == sorted(_ids(pool[0].test))
    assert [c.client_id for c in first] == [f"a_{i}" for i in range(6)]
    assert all(len(c.train) >= 2 and len(c.test) >= 1 for c in first)


def test_label_skew_grows_as_alpha_shrinks() -> None:
    # Prepare
    pool = [_source("a", 2000, 1)]
    alphas = (100.0, 1.0, 0.1)
    # Execute: average over three seeds so one lucky draw cannot decide the order.
    share, js = [], []
    for alpha in alphas:
        runs = [
            partition(pool, {"scheme": "dirichlet", "num_clients": 10, "alpha": alpha, "seed": s})
            for s in range(3)
        ]
        share.append(np.mean([_max_share(r) for r in runs]))
        js.append(np.mean([_mean_js(r) for r in runs]))
    # Assert
    assert share[0] < share[1] < share[2]
    assert js[0] < js[1] < js[2]
    iid = partition(pool, {"scheme": "iid", "num_clients": 10, "seed": 0})
    assert _mean_js(iid) < 0.05 < js[2]  # IID clients look alike; alpha=0.1 clients do not
    assert share[2] > 0.5  # at alpha=0.1 a typical client is dominated by one answer


def test_dirichlet_test_split_follows_each_clients_train_answers() -> None:
    # Prepare
    pool = [_source("a", 2000, 2)]
    clients = partition(pool, {"scheme": "dirichlet", "num_clients": 5, "alpha": 0.2, "seed": 0})

    def dist(samples) -> np.ndarray:
        counts = Counter(s.answer for s in samples)
        return np.array([counts.get(a, 0) for a in ANSWERS], float) / max(1, len(samples))

    # Execute: total-variation distance of train vs test answers, own client vs others.
    own = [0.5 * np.abs(dist(c.train) - dist(c.test)).sum() for c in clients]
    cross = [
        0.5 * np.abs(dist(a.train) - dist(b.test)).sum()
        for a in clients
        for b in clients
        if a is not b
    ]
    # Assert
    assert np.mean(own) < 0.5 * np.mean(cross)


def test_iid_and_quantity_skew() -> None:
    # Prepare
    pool = [_source("a", 300, 3), _source("b", 300, 4)]
    # Execute
    iid = partition(pool, {"scheme": "iid", "num_clients": 7, "seed": 0})
    flat = partition(pool, {"scheme": "iid", "num_clients": 7, "sources": ["b"], "seed": 0})
    # Assert
    sizes = [len(c.train) for c in iid]
    assert sum(sizes) == 600 and max(sizes) - min(sizes) <= 1
    assert [c.client_id for c in iid][:2] == ["client_0", "client_1"]
    assert {i.split("/")[0] for c in flat for i in _ids(c.train)} == {"b"}
    assert [c.client_id for c in flat][0] == "b_0"
    rng = np.random.default_rng(0)

    def spread(beta: float) -> float:
        draws = [quantity_sizes(600, 10, beta, 2, rng) for _ in range(20)]
        assert all(sum(d) == 600 and min(d) >= 2 for d in draws)
        return float(np.mean([np.std(d) / np.mean(d) for d in draws]))

    assert spread(100.0) < spread(1.0) < spread(0.2)
    skewed = partition(pool, {"scheme": "iid", "num_clients": 5, "quantity_beta": 0.3, "seed": 1})
    assert sum(len(c.train) for c in skewed) == 600
    assert min(len(c.train) for c in skewed) >= 2


def test_source_scheme_and_client_modality() -> None:
    # Prepare
    pool = [_source("ct", 20, 5, modality="ct"), _source("us", 20, 6, modality="us")]
    # Execute
    same = partition(pool, None)
    mixed = partition(pool, {"scheme": "iid", "num_clients": 2, "seed": 0})
    only_us = partition(pool, {"sources": ["us"]})
    # Assert
    assert [(c.client_id, c.modality) for c in same] == [("ct", "ct"), ("us", "us")]
    assert same[0].train is pool[0].train
    assert {c.modality for c in mixed} == {"mixed"}
    assert [c.client_id for c in only_us] == ["us"]


@pytest.mark.parametrize(
    ("cfg", "sources", "message"),
    [
        ({"scheme": "random"}, None, "scheme"),
        ({"scheme": "dirichlet", "alpha": 0.0}, None, "alpha"),
        ({"scheme": "dirichlet"}, "report", "needs short answers"),
        ({"scheme": "iid", "num_clients": 100}, None, "cannot give 100 clients"),
        ({"scheme": "iid", "sources": ["x"]}, None, "unknown source"),
        (
            {"scheme": "dirichlet", "quantity_beta": 1.0},
            None,
            "needs benchmark.partition.scheme=iid",
        ),
        ({"sheme": "iid"}, None, "unknown key"),
        ({"report_styles": ["terse"]}, "report", "cannot rewrite"),
    ],
)
def test_bad_configs_are_clear_errors(cfg, sources, message) -> None:
    pool = [_source("a", 40, 0, task=sources or "vqa")]
    with pytest.raises(ValueError, match=message):
        partition(pool, cfg)


def test_mixed_tasks_cannot_be_pooled() -> None:
    pool = [_source("a", 40, 0), _source("r", 40, 1, task="report")]
    with pytest.raises(ValueError, match="one task"):
        partition(pool, {"scheme": "iid", "num_clients": 2})


def test_hundred_clients_from_a_config() -> None:
    # Prepare
    pool = [_source("a", 1000, 9)]
    # Execute
    clients = partition(pool, PartitionConfig(scheme="dirichlet", num_clients=100, alpha=1.0))
    # Assert
    assert len(clients) == 100 and clients[0].client_id == "a_00"
    assert all(len(c.train) >= 2 and len(c.test) >= 1 for c in clients)


def test_dirichlet_split_min_size_failure_is_reported() -> None:
    with pytest.raises(ValueError, match="raise benchmark.partition.alpha"):
        dirichlet_split(["x"] * 10, 5, 0.01, np.random.default_rng(0), min_size=2, max_tries=5)
