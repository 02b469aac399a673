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


def write_predictions(
    path: Path,
    samples: Sequence[Any],
    preds: Sequence[str],
    scores: Sequence[Mapping[str, float]] | None = None,
) -> None:
    """One JSON line per sample (question, answer, answer type, prediction, per-sample scores),
    so a user can read the model's mistakes. Written to a temp file and renamed (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = scores if scores is not None else [{}] * len(preds)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        for s, p, sc in zip(samples, preds, rows, strict=True):
            row: dict[str, Any] = {"question": s.question, "answer": s.answer}
            if getattr(s, "answer_type", None) is not None:
                row["answer_type"] = s.answer_type
            row["prediction"] = p
            row["scores"] = dict(sc)
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
