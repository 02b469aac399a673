"""ROUGE-L F-measure (Lin, 2004), per sample and averaged, with the project tokeniser."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from fedmllm.metrics._inputs import check_pairs
from fedmllm.metrics.normalize import tokenize


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (O(len(a)·len(b)))."""
    if len(a) < len(b):
        a, b = b, a
    # One row of the dynamic-programming table suffices; keep it over the shorter sequence.
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(pred_tokens: Sequence[str], target_tokens: Sequence[str]) -> tuple[float, float, float]:
    """Sentence ROUGE-L precision, recall and F-measure (beta = 1).

    ``P = LCS / len(pred)``, ``R = LCS / len(target)``, ``F = 2PR / (P + R)``; all 0 when
    either side is empty or nothing is shared, as in the rouge-score package.

    Args:
        pred_tokens: Tokens of the prediction.
        target_tokens: Tokens of the reference.

    Returns:
        ``(precision, recall, fmeasure)``.
    """
    if not pred_tokens or not target_tokens:
        return 0.0, 0.0, 0.0
    lcs = lcs_length(pred_tokens, target_tokens)
    if lcs == 0:
        return 0.0, 0.0, 0.0
    p, r = lcs / len(pred_tokens), lcs / len(target_tokens)
    return p, r, 2 * p * r / (p + r)


class RougeL(Metric):
    """Mean over samples of the sentence-level ROUGE-L F-measure (beta = 1), in [0, 1].

    Tokenisation: :func:`~fedmllm.metrics.normalize.tokenize` with ``punctuation=False`` —
    the BLEU tokens without punctuation marks, as the rouge-score package also drops
    punctuation (it differs from rouge-score only in keeping hyphenated words and decimal
    numbers whole). No stemming.

    Args:
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    ``compute()`` returns the mean F-measure as a scalar tensor (0 before any update).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    f_sum: torch.Tensor
    total: torch.Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("f_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], targets: Sequence[str]) -> None:
        """Add one batch's sentence scores.

        Args:
            preds: Generated texts.
            targets: One reference text per prediction.
        """
        check_pairs(preds, targets)
        f_sum = 0.0
        for pred, target in zip(preds, targets, strict=True):
            pred_tokens = tokenize(pred, punctuation=False)
            target_tokens = tokenize(target, punctuation=False)
            f_sum += rouge_l(pred_tokens, target_tokens)[2]
        self.f_sum += f_sum
        self.total += len(preds)

    def compute(self) -> torch.Tensor:
        """Mean ROUGE-L F over every sample seen since the last reset."""
        return (self.f_sum / self.total.clamp_min(1)).float()
