"""Evaluation helpers of the round loop: which metrics score a client, batched generation,
scoring, and the per-sample predictions file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchmetrics import MetricCollection

from fedmllm.metrics import check_names, compute_scalars, sample_scores, task_metrics
from fedmllm.utils.io import write_atomic

GLOBAL_MODEL = "global"
"""Model id of the global model (initial adapters with the global shared tensors)."""


@dataclass
class MetricPlan:
    """Which metrics score which client.

    Attributes:
        names: Client id or task -> metric names (None: not chosen); a client id wins over its
            task, and a client in neither gets its task's defaults
            (``fedmllm.metrics.DEFAULT_METRICS``).
        options: Metric name -> options (e.g. ``{"bertscore": {"model": "/m/roberta"}}``);
            None-valued options count as unset.
    """

    names: Mapping[str, Sequence[str]] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A null entry (the config's placeholder) means "not chosen".
        self.names = {k: v for k, v in self.names.items() if v is not None}
        for key, names in self.names.items():
            if isinstance(names, str):
                raise ValueError(f"metrics for {key!r} must be a list of names, got {names!r}")
            check_names(list(names))

    def names_for(self, client_id: str, task: str) -> tuple[str, ...] | None:
        """The chosen names of a client, or None for its task's defaults."""
        for key in (client_id, task):
            if key in self.names:
                return tuple(self.names[key])
        return None

    def collection(
        self, client_id: str, task: str, skip_expensive: bool = False
    ) -> MetricCollection:
        """A fresh collection for a client (see ``fedmllm.metrics.task_metrics``)."""
        names = self.names_for(client_id, task)
        try:
            return task_metrics(task, names, self.options, skip_expensive)
        except (ValueError, FileNotFoundError) as exc:
            raise type(exc)(f"client {client_id!r}: {exc}") from exc


def score_predictions(
    collection: MetricCollection, preds: Sequence[str], samples: Sequence[Any]
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Score ``preds`` against the samples' answers (and answer types).

    Returns:
        The collection's plain-float scores, and one dict of per-sample scores per sample.
    """
    collection.update(
        list(preds),
        [s.answer for s in samples],
        answer_types=[getattr(s, "answer_type", None) for s in samples],
    )
    return compute_scalars(collection), sample_scores(collection, len(preds))


def max_new_tokens_for(table: Mapping[str, int], task: str) -> int:
    """The generation budget of a task from ``federation.max_new_tokens``.

    Raises:
        ValueError: If the table has no entry for the task (no silent default).
    """
    if task not in table:
        raise ValueError(
            f"federation.max_new_tokens has no entry for task {task!r} (it has {sorted(table)})"
        )
    return int(table[task])


@torch.no_grad()
def generate_all(
    method: Any, gen_collator: Any, samples: Sequence[Any], batch_size: int, max_new_tokens: int
) -> list[str]:
    """Greedy predictions for ``samples`` in batches (left-padded by the collator)."""
    preds: list[str] = []
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start : start + batch_size])
        preds.extend(method.predict(gen_collator(chunk), max_new_tokens))
    return preds


def sample_reference(sample: Any, index: int, client_id: str) -> dict[str, Any]:
    """Where a test sample comes from, so a wrong answer can be traced to its image.

    ``id``: the record's own (``<source>/<record id>`` for real data) or
    ``<client>/test/<index>``; ``image``: the image file (None for generated arrays and
    text-only samples); ``record``: the provenance the sample carries (source dataset,
    split, annotation file, the synthetic scene's id, which regenerates the image).
    """
    meta = getattr(sample, "meta", None) or {}
    image = sample.image
    record = {k: meta[k] for k in ("source", "split", "record_file") if k in meta}
    scene_id = getattr(meta.get("scene"), "scene_id", None)
    if scene_id is not None:
        record["scene"] = scene_id
    return {
        "id": str(meta.get("id", f"{client_id}/test/{index}")),
        "image": os.fspath(image) if isinstance(image, str | os.PathLike) else None,
        "record": record,
    }


def write_predictions(
    path: Path,
    samples: Sequence[Any],
    preds: Sequence[str],
    scores: Sequence[Mapping[str, float]] | None = None,
    client_id: str | None = None,
) -> None:
    """One JSON line per sample (its id, image and record (:func:`sample_reference`),
    question, answer, answer type, prediction, per-sample scores), so a user can read the
    model's mistakes and find each one's image. Written to a temp file and renamed (atomic).

    ``client_id`` names samples without an id of their own (default: the file's name).
    """
    rows = scores if scores is not None else [{}] * len(preds)
    owner = client_id if client_id is not None else path.stem
    lines = []
    for i, (s, p, sc) in enumerate(zip(samples, preds, rows, strict=True)):
        row: dict[str, Any] = sample_reference(s, i, owner)
        row.update(question=s.question, answer=s.answer)
        if getattr(s, "answer_type", None) is not None:
            row["answer_type"] = s.answer_type
        row["prediction"] = p
        row["scores"] = dict(sc)
        lines.append(json.dumps(row, default=str) + "\n")
    write_atomic(path, "".join(lines))
