"""Exact-match accuracy for short answers (VQA)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmllm.metrics._inputs import Target, check_pairs, references
from fedmllm.metrics.base import TextMetric
from fedmllm.metrics.normalize import normalize_answer


class ExactMatch(TextMetric):
    """Fraction of predictions equal to their target answer (to any one of several references).

    Args:
        strict: Compare after ``str.strip()`` only. Otherwise both sides go through
            :func:`~fedmllm.metrics.normalize.normalize_answer` (lower-case, punctuation,
            articles, whitespace), as in the VQA evaluation.
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    ``compute()`` returns a scalar tensor in [0, 1] (0 before any update). Per sample: 1 or 0.
    """

    correct: torch.Tensor
    total: torch.Tensor

    def __init__(self, strict: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.strict = strict
        self.add_sums(correct=0, total=0)

    def _canon(self, text: str) -> str:
        return text.strip() if self.strict else normalize_answer(text)

    def update(self, preds: Sequence[str], targets: Sequence[Target]) -> None:
        """Count matches in one batch.

        Args:
            preds: Generated answers.
            targets: Reference answer(s), one entry per prediction.
        """
        check_pairs(preds, targets)
        hits = [
            float(any(self._canon(p) == self._canon(r) for r in references(t)))
            for p, t in zip(preds, targets, strict=True)
        ]
        self.correct += int(sum(hits))
        self.total += len(preds)
        self.last_sample_scores = list(hits)

    def compute(self) -> torch.Tensor:
        """Accuracy over every sample seen since the last reset."""
        return self.correct.float() / self.total.clamp_min(1)
