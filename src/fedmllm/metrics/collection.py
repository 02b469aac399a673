"""Per-task metric collections and their plain-float summary for logging."""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection

from fedmllm.metrics.bleu import Bleu
from fedmllm.metrics.box import BoxIoU
from fedmllm.metrics.exact_match import ExactMatch
from fedmllm.metrics.rouge import RougeL

TASKS: tuple[str, ...] = ("vqa", "report", "detection")

MAIN_METRIC: dict[str, str] = {"vqa": "em", "report": "rougeL", "detection": "iou"}
"""The key each task reports as its headline number (all higher-is-better)."""

METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "vqa": ("em", "em_strict"),
    "report": ("bleu4", "rougeL"),
    "detection": ("iou", "hit50", "unparsable"),
}
"""The keys :func:`compute_scalars` returns for each task's collection."""


def task_metrics(task: str) -> MetricCollection:
    """A fresh metric collection for a task; ``update(preds, targets)`` with lists of strings.

    - ``vqa``: ``em`` (normalised exact match), ``em_strict`` (exact after strip);
    - ``report``: ``bleu4`` (corpus BLEU-4), ``rougeL`` (mean ROUGE-L F);
    - ``detection``: ``iou``, ``hit50``, ``unparsable`` (from one :class:`BoxIoU`).

    Args:
        task: One of :data:`TASKS`.

    Returns:
        The collection; ``compute()`` yields a dict with the keys above.

    Raises:
        ValueError: For an unknown task.
    """
    metrics: dict[str, Metric]
    if task == "vqa":
        metrics = {"em": ExactMatch(), "em_strict": ExactMatch(strict=True)}
    elif task == "report":
        metrics = {"bleu4": Bleu(n_gram=4), "rougeL": RougeL()}
    elif task == "detection":
        # BoxIoU returns a dict; the collection flattens it to iou / hit50 / unparsable.
        metrics = {"box": BoxIoU()}
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    # Compute groups would let metrics whose states look equal after the first batch share
    # one state (em and em_strict agree on clean answers), then drift apart silently.
    return MetricCollection(metrics, compute_groups=False)


def compute_scalars(collection: MetricCollection | Metric) -> dict[str, float]:
    """Compute a collection (or one metric) and return plain floats, ready for ``log_dict``.

    Args:
        collection: From :func:`task_metrics`, after ``update`` calls.

    Returns:
        ``{key: float}`` with the short keys of :data:`METRIC_KEYS`.

    Raises:
        TypeError: If a single metric computes a bare tensor (it has no key to report under).
    """
    result = collection.compute()
    if isinstance(result, torch.Tensor):
        raise TypeError("a single metric with a tensor result has no key; use task_metrics")
    return {key: float(value) for key, value in result.items()}
