"""Heterogeneity controls: how a benchmark's sources become federated clients.

A builder first produces **sources** (one dataset, one visual style, one modality, ...: a
train and a test pool each), then :func:`partition` turns them into clients:

- ``source``: one client per source (the papers' default: Fed-VQA, Fed-Med, X-FLoRA).
- ``iid``: the chosen sources pooled and split uniformly at random over ``num_clients``
  (Fed-MoLE Table 8 splits AQUA five ways); ``quantity_beta`` adds quantity skew, client
  sizes proportional to a Dirichlet(``quantity_beta``) draw.
- ``dirichlet``: label skew over answers (Hsu et al. 2019): for every answer class ``c`` a
  draw ``p_c ~ Dirichlet(alpha)`` over clients decides which share of that class's train
  samples each client gets; small ``alpha`` concentrates each class on few clients. A
  client's test split follows the same shares, so it is tested on what it trains on.

Every random choice comes from ``numpy.random.default_rng(seed)``, so a partition is a pure
function of its config and the source contents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmllm.data.schema import ClientData, Sample
from fedmllm.data.splits import (
    allocate,
    dirichlet_split,
    ensure_min,
    even_sizes,
    iid_split,
    quantity_sizes,
)

SCHEMES = ("source", "iid", "dirichlet")
VAL_SEED_STREAM = 17  # the validation share-out's own generator: np.random.default_rng([seed, 17])


@dataclass
class Source:
    """One source's samples before partitioning."""

    name: str
    task: str
    modality: str
    train: list[Sample]
    test: list[Sample]
    val: list[Sample] = field(default_factory=list)


@dataclass(frozen=True)
class PartitionConfig:
    """How sources become clients.

    Attributes:
        scheme: One of ``SCHEMES``.
        num_clients: Clients for ``iid``/``dirichlet`` (2 to a few hundred).
        sources: Sources pooled by ``iid``/``dirichlet`` (``None``: all; they must share a
            task); ``source`` keeps only these sources when given.
        alpha: Dirichlet concentration of the label skew (smaller = more skewed).
        quantity_beta: ``iid`` only: client sizes proportional to a Dirichlet(beta) draw
            (smaller = more unequal); ``None`` for equal sizes.
        min_train: Fewest train samples any client may get (redraws until met).
        min_test: Fewest test samples any client may get.
        seed: Seed of every draw.
        report_styles: Report-writing style per client, cycled over the report clients
            (``None`` keeps each source's own style); needs a builder that can restyle.
    """

    scheme: str = "source"
    num_clients: int = 5
    sources: tuple[str, ...] | None = None
    alpha: float = 0.5
    quantity_beta: float | None = None
    min_train: int = 2
    min_test: int = 1
    seed: int = 0
    report_styles: tuple[str, ...] | None = None
    max_tries: int = field(default=1000, repr=False)

    @classmethod
    def from_any(cls, value: Any) -> PartitionConfig:
        """From ``None`` (one client per source), a dict/DictConfig, or a config."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        data = {str(k): v for k, v in dict(value).items()}
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"partition: unknown key(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}"
            )
        for key in ("sources", "report_styles"):
            if data.get(key) is not None:
                data[key] = tuple(str(v) for v in data[key])
        return cls(**data)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if self.scheme not in SCHEMES:
            raise ValueError(f"benchmark.partition.scheme={self.scheme}: must be one of {SCHEMES}")
        if self.scheme != "source" and self.num_clients < 1:
            raise ValueError(
                f"benchmark.partition.num_clients must be >= 1, got {self.num_clients}"
            )
        if self.alpha <= 0:
            raise ValueError(f"benchmark.partition.alpha must be > 0, got {self.alpha}")
        if self.quantity_beta is not None and (self.quantity_beta <= 0 or self.scheme != "iid"):
            raise ValueError(
                "benchmark.partition.quantity_beta must be > 0 and needs "
                "benchmark.partition.scheme=iid"
            )
        if self.min_train < 0 or self.min_test < 0:
            raise ValueError(
                "benchmark.partition.min_train and benchmark.partition.min_test must be >= 0"
            )


def _client_modality(samples: Sequence[Sample]) -> str:
    mods = {s.modality for s in samples}
    return mods.pop() if len(mods) == 1 else "mixed"


def _client_ids(pool: Sequence[Source], k: int) -> list[str]:
    stem = pool[0].name if len(pool) == 1 else "client"
    width = len(str(k - 1))
    return [f"{stem}_{i:0{width}d}" for i in range(k)]


def _pooled(sources: Sequence[Source], cfg: PartitionConfig) -> list[Source]:
    names = [s.name for s in sources]
    if cfg.sources is None:
        return list(sources)
    missing = [n for n in cfg.sources if n not in names]
    if missing:
        raise ValueError(f"partition.sources: unknown source(s) {missing}; have {names}")
    return [s for s in sources if s.name in cfg.sources]


def partition(
    sources: Sequence[Source],
    config: PartitionConfig | dict[str, Any] | None = None,
    restyle: Callable[[Sample, str], Sample] | None = None,
) -> list[ClientData]:
    """Turn sources into clients as ``config`` says.

    Args:
        sources: The builder's sources (train and test pools).
        config: A :class:`PartitionConfig` or its fields (``None``: one client per source).
        restyle: ``restyle(sample, style)`` rewrites a report sample in another writing
            style; needed only when ``config.report_styles`` is set.

    Returns:
        The clients. Samples are shared with the sources, not copied (unless restyled).

    Raises:
        ValueError: For a bad config, pooled sources of different tasks, label skew on a
            non-VQA pool, or a draw that cannot meet the minimum sizes.
    """
    cfg = PartitionConfig.from_any(config)
    cfg.check()
    pool = _pooled(sources, cfg)
    if not pool:
        raise ValueError("partition: no source selected")
    rng = np.random.default_rng(cfg.seed)
    if cfg.scheme == "source":
        clients = [ClientData(s.name, s.task, s.modality, s.train, s.test, s.val) for s in pool]
    else:
        clients = _split_pool(pool, cfg, rng)
        _split_val(pool, clients, cfg)
    if cfg.report_styles:
        clients = _restyle_reports(clients, cfg.report_styles, restyle)
    return clients


def _split_pool(
    pool: Sequence[Source], cfg: PartitionConfig, rng: np.random.Generator
) -> list[ClientData]:
    tasks = {s.task for s in pool}
    if len(tasks) != 1:
        raise ValueError(
            f"partition.scheme={cfg.scheme} pools sources of one task; got {sorted(tasks)} "
            f"from {[s.name for s in pool]} (choose partition.sources)"
        )
    task = tasks.pop()
    train = [x for s in pool for x in s.train]
    test = [x for s in pool for x in s.test]
    k = cfg.num_clients
    if k * cfg.min_train > len(train) or k * cfg.min_test > len(test):
        raise ValueError(
            f"partition: {len(train)} train / {len(test)} test samples cannot give {k} clients "
            f"{cfg.min_train} / {cfg.min_test} each; lower benchmark.partition.num_clients or "
            "raise "
            "benchmark.train_sizes / benchmark.test_size"
        )
    if cfg.scheme == "iid":
        sizes = (
            quantity_sizes(len(train), k, cfg.quantity_beta, cfg.min_train, rng, cfg.max_tries)
            if cfg.quantity_beta is not None
            else even_sizes(len(train), k)
        )
        train_parts = iid_split(len(train), sizes, rng)
        test_parts = iid_split(len(test), even_sizes(len(test), k), rng)
    else:
        if task != "vqa":
            raise ValueError(
                f"partition.scheme=dirichlet skews answer labels and needs short answers (vqa); "
                f"the pool's task is {task!r}"
            )
        labels = [x.answer for x in train]
        train_parts, props = dirichlet_split(
            labels, k, cfg.alpha, rng, cfg.min_train, cfg.max_tries
        )
        test_parts = _test_by_shares(test, props, rng, k)
        prefer = [_top_label([labels[i] for i in p]) for p in train_parts]
        test_parts = ensure_min(test_parts, prefer, [x.answer for x in test], cfg.min_test)
    ids = _client_ids(pool, k)
    clients = []
    for cid, tr, te in zip(ids, train_parts, test_parts, strict=True):
        tr_s, te_s = [train[i] for i in tr], [test[i] for i in te]
        clients.append(ClientData(cid, task, _client_modality(tr_s + te_s), tr_s, te_s))
    return clients


def _split_val(pool: Sequence[Source], clients: list[ClientData], cfg: PartitionConfig) -> None:
    """Share the pooled validation samples out over ``clients`` in place.

    Evenly at random (``iid``) or with each client's train answer shares (``dirichlet``, as
    its test split), from a generator of its own: the train and test splits do not move.
    """
    val = [x for s in pool for x in s.val]
    if not val:
        return
    rng = np.random.default_rng([cfg.seed, VAL_SEED_STREAM])
    k = len(clients)
    if cfg.scheme == "iid":
        parts = iid_split(len(val), even_sizes(len(val), k), rng)
    else:
        classes = sorted({x.answer for c in clients for x in c.train})
        counts = np.array(
            [[sum(x.answer == a for x in c.train) for c in clients] for a in classes], dtype=float
        )
        props = {a: row / row.sum() for a, row in zip(classes, counts, strict=True)}
        parts = _test_by_shares(val, props, rng, k)
    for client, part in zip(clients, parts, strict=True):
        client.val = [val[i] for i in part]


def _top_label(labels: Sequence[str]) -> str | None:
    if not labels:
        return None
    values, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    return str(values[int(np.argmax(counts))])


def _test_by_shares(
    test: Sequence[Sample], props: dict[str, np.ndarray], rng: np.random.Generator, k: int
) -> list[np.ndarray]:
    """Split test samples with the train shares of their class; unseen classes evenly."""
    labels = np.asarray([x.answer for x in test], dtype=object)
    by_class = {c: np.flatnonzero(labels == c) for c in sorted(set(labels.tolist()))}
    shares = {c: props.get(c, np.full(k, 1.0 / k)) for c in by_class}
    return allocate(by_class, shares, rng, k)


def _restyle_reports(
    clients: list[ClientData],
    styles: Sequence[str],
    restyle: Callable[[Sample, str], Sample] | None,
) -> list[ClientData]:
    """Rewrite the i-th report client's samples in ``styles[i % len(styles)]``."""
    if restyle is None:
        raise ValueError(
            "benchmark.partition.report_styles: this benchmark cannot rewrite its reports"
        )
    out, i = [], 0
    for c in clients:
        if c.task == "report":
            style = styles[i % len(styles)]
            i += 1
            c = ClientData(
                c.client_id,
                c.task,
                c.modality,
                [restyle(s, style) for s in c.train],
                [restyle(s, style) for s in c.test],
                [restyle(s, style) for s in c.val],
            )
        out.append(c)
    return out
