"""Metrics by name, and the default names per task.

A benchmark (or a config) chooses a client's metrics as a list of names; :func:`build_metrics`
turns the list into a ``MetricCollection``. Options of a metric (the BERTScore encoder, the
judge, the closed-ended classes) are passed by name, so this room never sees a data class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torchmetrics import MetricCollection

from fedmllm.metrics.base import TextMetric
from fedmllm.metrics.bleu import Bleu
from fedmllm.metrics.box import BoxIoU
from fedmllm.metrics.clinical import CLINICAL_KEYS, ClinicalEfficacy
from fedmllm.metrics.exact_match import ExactMatch
from fedmllm.metrics.open_text import KEYS as OPEN_TEXT_KEYS
from fedmllm.metrics.open_text import OpenText
from fedmllm.metrics.rouge import Rouge
from fedmllm.metrics.vqa import ClosedEnded, OpenRecall, TokenAccuracy


def _bertscore(**options: Any) -> TextMetric:
    from fedmllm.metrics.bertscore import BERTScore  # imports bert-score only when asked for

    if not options.get("model"):
        raise ValueError(
            "metric 'bertscore' needs an encoder: set federation.metric_options.bertscore.model="
            "<local path or cached hub id> (e.g. /models/roberta-large)"
        )
    return BERTScore(**options)


def _judge(**options: Any) -> TextMetric:
    from fedmllm.metrics.judge import LLMJudge

    if not options.get("backend"):
        raise ValueError(
            "metric 'judge' needs a judge: set federation.metric_options.judge.backend=local and "
            "federation.metric_options.judge.path=<model dir>, or ...judge.backend=openai with "
            "federation.metric_options.judge.base_url=<url> and ...judge.model=<name>"
        )
    return LLMJudge(options)


@dataclass(frozen=True)
class MetricSpec:
    """How to build one named metric and which keys its ``compute()`` yields."""

    factory: Callable[..., TextMetric]
    keys: tuple[str, ...]
    expensive: bool = False


METRICS: dict[str, MetricSpec] = {
    "em": MetricSpec(ExactMatch, ("em",)),
    "em_strict": MetricSpec(lambda **kw: ExactMatch(strict=True, **kw), ("em_strict",)),
    "closed": MetricSpec(ClosedEnded, ("closed_acc", "closed_f1", "n_closed")),
    "open_recall": MetricSpec(OpenRecall, ("open_recall", "n_open")),
    "token_acc": MetricSpec(TokenAccuracy, ("token_acc",)),
    "bleu": MetricSpec(
        lambda **kw: Bleu(all_orders=True, **kw), ("bleu1", "bleu2", "bleu3", "bleu4")
    ),
    "rouge": MetricSpec(Rouge, ("rouge1", "rouge2", "rougeL")),
    "open_text": MetricSpec(OpenText, OPEN_TEXT_KEYS),  # BLEU/ROUGE-L of open VQA questions
    "box": MetricSpec(BoxIoU, ("iou", "hit50", "unparsable")),
    "clinical": MetricSpec(ClinicalEfficacy, CLINICAL_KEYS),
    "bertscore": MetricSpec(
        _bertscore, ("bertscore_p", "bertscore_r", "bertscore_f"), expensive=True
    ),
    "judge": MetricSpec(_judge, ("judge", "judge_unparsable", "judge_failed"), expensive=True),
}
"""Every metric name a benchmark or config may list, with its output keys."""

DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "vqa": ("em", "em_strict", "closed", "open_recall", "token_acc"),
    "report": ("bleu", "rouge"),
    "detection": ("box",),
    "classification": ("em",),  # a predicted label name equal to the gold one: accuracy
}
"""The collection each task gets when nobody chooses: nothing that needs a model or a download
(add ``bertscore`` and ``judge`` by name once an encoder / judge is configured)."""


def check_names(names: Sequence[str]) -> None:
    """Raise ``ValueError`` naming any unknown or repeated metric name."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"metric names repeat: {list(names)}")


def metric_keys(names: Sequence[str]) -> tuple[str, ...]:
    """The keys a collection of these metrics computes, in the order ``compute()`` yields them.

    ``MetricCollection`` orders its metrics by name, so the keys follow the sorted names.
    """
    check_names(names)
    return tuple(k for n in sorted(names) for k in METRICS[n].keys)


def build_metrics(
    names: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    skip_expensive: bool = False,
) -> MetricCollection:
    """A fresh collection of the named metrics.

    Args:
        names: Metric names (keys of :data:`METRICS`).
        options: Per-name keyword arguments, e.g. ``{"bertscore": {"model": "/m/roberta"},
            "closed": {"classes": ["yes", "no"]}}``; names not listed get none, and
            None-valued options count as unset.
        skip_expensive: Leave out metrics that run a model (for the trivial baseline).

    Returns:
        The collection; ``update(preds, targets, answer_types=...)`` passes ``answer_types``
        only to the metrics that take it.

    Raises:
        ValueError: For an unknown name (in ``names`` or ``options``), or a listed metric
            whose required option is missing.
    """
    check_names(names)
    options = dict(options or {})
    stray = set(options) - set(METRICS)
    if stray:
        raise ValueError(f"options given for unknown metric(s) {sorted(stray)}")
    # None-valued options are unset (configs list the options with null defaults).
    kwargs = {n: {k: v for k, v in (options.get(n) or {}).items() if v is not None} for n in names}
    metrics = {
        n: METRICS[n].factory(**kwargs[n])
        for n in names
        if not (skip_expensive and METRICS[n].expensive)
    }
    # Compute groups would let metrics whose states look equal after the first batch share
    # one state (em and em_strict agree on clean answers), then drift apart silently.
    return MetricCollection(metrics, compute_groups=False)
