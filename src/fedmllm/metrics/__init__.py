"""Evaluation metrics as torchmetrics ``Metric``s, per-task collections and trivial baselines.

Every metric takes ``update(preds: list[str], targets: list[str | list[str]])`` (several
references where the metric supports them; the VQA metrics also ``answer_types``) and keeps
summed states, so batches and processes merge exactly. Scores are in [0, 1], except the LLM
judge's mean score (1-5, printed x 100 as the paper's 100-500 %) and the counts
(``unparsable``, ``n_closed``, ...). BERTScore and the judge load their packages and models
only when built.
"""

from fedmllm.metrics.base import TextMetric
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
    sample_scores,
    task_metrics,
)
from fedmllm.metrics.exact_match import ExactMatch
from fedmllm.metrics.judge import JUDGE_PROMPT, LLMJudge, judge_prompt, parse_judge_score
from fedmllm.metrics.normalize import normalize_answer, tokenize
from fedmllm.metrics.registry import (
    DEFAULT_METRICS,
    METRICS,
    build_metrics,
    check_names,
    metric_keys,
)
from fedmllm.metrics.rouge import Rouge, RougeL, lcs_length, rouge_l, rouge_n
from fedmllm.metrics.vqa import ClosedEnded, OpenRecall, TokenAccuracy, is_closed

__all__ = [
    "DEFAULT_METRICS",
    "JUDGE_PROMPT",
    "MAIN_METRIC",
    "METRICS",
    "METRIC_KEYS",
    "TASKS",
    "Bleu",
    "Box",
    "BoxIoU",
    "ClosedEnded",
    "ExactMatch",
    "LLMJudge",
    "OpenRecall",
    "Rouge",
    "RougeL",
    "TextMetric",
    "TokenAccuracy",
    "bleu_from_counts",
    "box_iou",
    "build_metrics",
    "check_names",
    "clean_box",
    "compute_scalars",
    "format_box",
    "is_closed",
    "judge_prompt",
    "lcs_length",
    "majority_answer",
    "mean_box",
    "metric_keys",
    "most_common_text",
    "normalize_answer",
    "parse_box",
    "parse_judge_score",
    "rouge_l",
    "rouge_n",
    "sample_scores",
    "task_metrics",
    "tokenize",
    "trivial_prediction",
    "trivial_predictions",
]
