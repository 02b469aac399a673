"""Evaluation metrics as torchmetrics ``Metric``s, per-task collections and trivial baselines.

Every metric takes ``update(preds: list[str], targets: list[str])`` and keeps summed states,
so batches and processes merge exactly. Scores are in [0, 1].
"""

from fedmllm.metrics.baselines import (
    majority_answer,
    mean_box,
    most_common_text,
    trivial_prediction,
    trivial_predictions,
)
from fedmllm.metrics.bleu import Bleu, bleu_from_counts
from fedmllm.metrics.box import BoxIoU
from fedmllm.metrics.box_parse import Box, box_iou, clean_box, format_box, parse_box
from fedmllm.metrics.collection import (
    MAIN_METRIC,
    METRIC_KEYS,
    TASKS,
    compute_scalars,
    task_metrics,
)
from fedmllm.metrics.exact_match import ExactMatch
from fedmllm.metrics.normalize import normalize_answer, tokenize
from fedmllm.metrics.rouge import RougeL, lcs_length, rouge_l

__all__ = [
    "MAIN_METRIC",
    "METRIC_KEYS",
    "TASKS",
    "Bleu",
    "Box",
    "BoxIoU",
    "ExactMatch",
    "RougeL",
    "bleu_from_counts",
    "box_iou",
    "clean_box",
    "compute_scalars",
    "format_box",
    "lcs_length",
    "majority_answer",
    "mean_box",
    "most_common_text",
    "normalize_answer",
    "parse_box",
    "rouge_l",
    "task_metrics",
    "tokenize",
    "trivial_prediction",
    "trivial_predictions",
]
