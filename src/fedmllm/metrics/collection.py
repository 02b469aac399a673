"""Per-task metric collections, their plain-float summary and their per-sample scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric, MetricCollection

from fedmllm.metrics.registry import DEFAULT_METRICS, build_metrics, metric_keys

TASKS: tuple[str, ...] = ("vqa", "report", "detection", "classification")

MAIN_METRIC: dict[str, str] = {
    "vqa": "em",
    "report": "rougeL",
    "detection": "iou",
    "classification": "em",
}
"""The key each task reports as its headline number (all higher-is-better)."""

METRIC_KEYS: dict[str, tuple[str, ...]] = {t: metric_keys(DEFAULT_METRICS[t]) for t in TASKS}
"""The keys :func:`compute_scalars` returns for each task's default collection."""


def task_metrics(
    task: str,
    names: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    skip_expensive: bool = False,
) -> MetricCollection:
    """A fresh metric collection for a task; ``update(preds, targets, answer_types=None)``.

    Default names (:data:`~fedmllm.metrics.registry.DEFAULT_METRICS`):

    - ``vqa``: ``em`` (normalised exact match), ``em_strict`` (exact after strip),
      ``closed`` (``closed_acc``, ``closed_f1``, ``n_closed``), ``open_recall``
      (``open_recall``, ``n_open``), ``token_acc``;
    - ``report``: ``bleu`` (corpus ``bleu1``..``bleu4``), ``rouge`` (mean ``rouge1``,
      ``rouge2``, ``rougeL`` F);
    - ``detection``: ``box`` (``iou``, ``hit50``, ``unparsable``).

    Args:
        task: One of :data:`TASKS`.
        names: Metric names chosen by the benchmark or config instead of the defaults; they
            must produce the task's :data:`MAIN_METRIC`.
        options: Per-name metric options (see :func:`~fedmllm.metrics.registry.build_metrics`).
        skip_expensive: Leave out metrics that run a model.

    Returns:
        The collection; ``compute()`` yields a dict with the keys above.

    Raises:
        ValueError: For an unknown task, an unknown metric name, or names without the task's
            main metric.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    names = tuple(names) if names is not None else DEFAULT_METRICS[task]
    if MAIN_METRIC[task] not in metric_keys(names):
        raise ValueError(
            f"metrics {list(names)} for a {task} client do not compute its main metric "
            f"{MAIN_METRIC[task]!r}"
        )
    return build_metrics(names, options, skip_expensive)


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


def sample_scores(collection: MetricCollection, num_samples: int) -> list[dict[str, float]]:
    """Per-sample scores of the collection's last ``update``, one dict per sample.

    Keys are those of ``compute()``; a value a metric marks not applicable (e.g.
    ``closed_acc`` of an open question) is left out of that sample's dict.

    Args:
        collection: A collection right after ``update`` with ``num_samples`` samples.
        num_samples: The batch size of that update.

    Returns:
        ``num_samples`` dicts.

    Raises:
        ValueError: If a metric recorded a different number of samples.
    """
    rows: list[dict[str, float]] = [{} for _ in range(num_samples)]
    for name, metric in collection.items(keep_base=True, copy_state=False):
        recorded = getattr(metric, "last_sample_scores", None)
        if recorded is None:
            continue
        columns = recorded if isinstance(recorded, dict) else {name: recorded}
        for key, values in columns.items():
            if len(values) != num_samples:
                raise ValueError(f"metric {name!r} recorded {len(values)} of {num_samples} samples")
            for row, value in zip(rows, values, strict=True):
                if value is not None:
                    row[key] = float(value)
    return rows
