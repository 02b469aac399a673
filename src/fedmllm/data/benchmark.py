"""The benchmark object every composition root consumes, and helpers shared by all builders.

The contract (``fedmllm.train``): ``.name``; ``.public``, the split the tiny model is pretrained
on, disjoint from every client; ``.clients``; ``.vocabulary()``, a word list that covers every
token of every question and answer (the tiny model cannot emit a word it does not know).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fedmllm.data.schema import TASKS, ClientData, Sample


@dataclass
class Benchmark:
    """Public pretraining split, federated clients and the word list of their texts.

    Attributes:
        name: Benchmark name (``results.json`` reports it).
        public: Samples the tiny model is pretrained on (may be empty for a pretrained model).
        clients: One entry per hospital.
        words: Vocabulary returned by :meth:`vocabulary`.
        validation: Record-validation counts of the build (see ``fedmllm.data.validation``).
    """

    name: str
    public: list[Sample]
    clients: list[ClientData]
    words: list[str] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)

    def vocabulary(self) -> list[str]:
        """Every token the benchmark's texts contain (the tiny model's word list)."""
        return list(self.words)

    def all_samples(self) -> list[Sample]:
        """Public, then every client's train, test and validation samples."""
        return self.public + [s for c in self.clients for s in (*c.train, *c.test, *c.val)]


def resolve_sizes(
    train_sizes: Mapping[str, Any] | None,
    clients: Iterable[tuple[str, str]],
    defaults: Mapping[str, int],
) -> dict[str, int]:
    """Train size per client from a dict keyed by task and/or client id.

    A client id key wins over its task's key, which wins over ``defaults`` (keyed by client id
    or task). Task keys with no client of that task are ignored, so one override such as
    ``debug=smoke``'s ``{vqa: 8, report: 8, detection: 8}`` fits every benchmark.

    Args:
        train_sizes: Overrides (a dict or Hydra DictConfig); ``None`` for none.
        clients: ``(client_id, task)`` pairs.
        defaults: Fallback sizes keyed by client id or task.

    Returns:
        ``client_id -> size``.

    Raises:
        ValueError: For a key that is neither a task nor a client id, a negative size, or a
            client without any size.
    """
    pairs = list(clients)
    given = {str(k): int(v) for k, v in (train_sizes or {}).items() if v is not None}
    ids = {cid for cid, _ in pairs}
    unknown = sorted(set(given) - ids - set(TASKS))
    if unknown:
        raise ValueError(
            f"benchmark.train_sizes: unknown key(s) {unknown}; use a task {TASKS} or a client id "
            f"{sorted(ids)}"
        )
    sizes = {}
    for cid, task in pairs:
        for table, key in ((given, cid), (given, task), (defaults, cid), (defaults, task)):
            if key in table:
                sizes[cid] = int(table[key])
                break
        else:
            raise ValueError(f"benchmark.train_sizes: no size for client {cid!r} (task {task!r})")
        if sizes[cid] < -1:
            raise ValueError(
                f"benchmark.train_sizes: negative size {sizes[cid]} for client {cid!r}"
            )
    return sizes


def apply_partition(
    bench: Benchmark,
    config: Any,
    restyle: Callable[[Sample, str], Sample] | None = None,
) -> Benchmark:
    """``bench`` with its clients (taken as sources) re-partitioned by ``config``.

    ``None`` returns ``bench`` unchanged. The public split and the words are kept; extra words
    a restyle may emit must be added by the caller.
    """
    from fedmllm.data.partition import Source, partition

    if config is None:
        return bench
    sources = [
        Source(c.client_id, c.task, c.modality, c.train, c.test, c.val) for c in bench.clients
    ]
    clients = partition(sources, config, restyle)
    return replace(bench, clients=clients)


def validate_benchmark(bench: Benchmark, skip_invalid: bool = False) -> Benchmark:
    """Check every record of ``bench`` (public and each client split) and record the counts.

    Raises ``InvalidRecordError`` on a bad record unless ``skip_invalid``; a client left without
    train or test samples after skipping is a ``ValueError`` naming it.
    """
    from fedmllm.data.validation import ValidationReport, validate_records

    report = ValidationReport()
    decoded: dict[str, str | None] = {}

    def check(name: str, samples: list[Sample]) -> list[Sample]:
        return validate_records(name, samples, report, skip_invalid, decoded)

    bench.public = check(f"{bench.name}/public", bench.public)
    for c in bench.clients:
        had = (len(c.train), len(c.test))
        c.train, c.test, c.val = (
            check(f"{c.client_id}/train", c.train),
            check(f"{c.client_id}/test", c.test),
            check(f"{c.client_id}/val", c.val),
        )
        _check_image_mix(c)
        if (had[0] and not c.train) or (had[1] and not c.test):
            raise ValueError(
                f"client {c.client_id!r} has {len(c.train)} train / {len(c.test)} test records "
                "left after skipping invalid ones; it needs at least one of each"
            )
    bench.validation = report.to_dict()
    return bench


def _check_image_mix(client: ClientData) -> None:
    """A client must hold image samples only or text-only samples only: collate cannot batch
    a mix, and failing here names the client instead of failing inside a training batch."""
    samples = [*client.train, *client.test, *client.val]
    with_image = sum(s.image is not None for s in samples)
    if 0 < with_image < len(samples):
        raise ValueError(
            f"client {client.client_id!r} mixes {with_image} samples with images and "
            f"{len(samples) - with_image} text-only samples; put text-only records in a client "
            "of their own (mixed batches are not supported)"
        )
    with_audio = sum(getattr(s, "audio", None) is not None for s in samples)
    if 0 < with_audio < len(samples):
        raise ValueError(
            f"client {client.client_id!r} mixes {with_audio} samples with audio and "
            f"{len(samples) - with_audio} without; put them in separate clients (mixed batches "
            "are not supported)"
        )
