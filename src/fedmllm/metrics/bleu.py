"""Corpus BLEU as defined by sacreBLEU (Papineni et al., 2002), with the project tokeniser."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from torchmetrics import Metric

from fedmllm.metrics._inputs import check_pairs
from fedmllm.metrics.normalize import tokenize


def ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Multiset of the n-grams of a token sequence."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu_from_counts(
    correct: Sequence[float],
    total: Sequence[float],
    pred_len: float,
    target_len: float,
    smooth: bool = False,
) -> float:
    """BLEU from corpus-level n-gram statistics, following sacreBLEU's ``compute_bleu``.

    Args:
        correct: Clipped n-gram matches per order 1..N, summed over the corpus.
        total: Predicted n-grams per order, summed over the corpus.
        pred_len: Total predicted tokens.
        target_len: Total reference tokens.
        smooth: Use sacreBLEU's "exp" smoothing: the i-th order with no match (i = 1, 2, ...)
            gets precision ``1 / (2^i * total)``. Without it, any order with no match (or no
            predicted n-gram) makes BLEU 0.

    Returns:
        BLEU in [0, 1].
    """
    log_sum = 0.0
    smooth_factor = 1.0
    for c, t in zip(correct, total, strict=True):
        if t == 0:
            # No predicted n-grams of this order: sacreBLEU scores 0, smoothed or not.
            return 0.0
        if c > 0:
            log_sum += math.log(c / t)
        elif smooth:
            smooth_factor *= 2.0
            log_sum += math.log(1.0 / (smooth_factor * t))
        else:
            return 0.0
    if pred_len == 0:
        return 0.0
    brevity = 1.0 if pred_len >= target_len else math.exp(1.0 - target_len / pred_len)
    return brevity * math.exp(log_sum / len(correct))


class Bleu(Metric):
    """Corpus BLEU-N with one reference per prediction, reported in [0, 1] (sacreBLEU x 0.01).

    The sacreBLEU definition: clipped n-gram matches and predicted n-gram counts are summed
    over the whole corpus for each order 1..N; BLEU is the brevity penalty
    ``min(1, exp(1 - ref_len / pred_len))`` (lengths summed over the corpus) times the
    geometric mean of the N precisions. Not an average of sentence BLEU.

    Tokenisation: :func:`~fedmllm.metrics.normalize.tokenize` — lower-case, words, hyphenated
    words and decimal numbers kept whole, each other punctuation mark a token; the spirit of
    sacreBLEU's "13a" on lower-cased text.

    Args:
        n_gram: Highest n-gram order N (4 for BLEU-4).
        smooth: Apply sacreBLEU's "exp" smoothing (see :func:`bleu_from_counts`); off by
            default, as in the BLEU paper.
        **kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: torch.Tensor
    total: torch.Tensor
    pred_len: torch.Tensor
    target_len: torch.Tensor

    def __init__(self, n_gram: int = 4, smooth: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if n_gram < 1:
            raise ValueError(f"n_gram must be >= 1, got {n_gram}")
        self.n_gram = n_gram
        self.smooth = smooth
        zeros = torch.zeros(n_gram, dtype=torch.long)
        self.add_state("correct", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("total", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("pred_len", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("target_len", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], targets: Sequence[str]) -> None:
        """Add one batch's n-gram statistics.

        Args:
            preds: Generated texts.
            targets: One reference text per prediction.
        """
        check_pairs(preds, targets)
        correct = [0] * self.n_gram
        total = [0] * self.n_gram
        pred_len = target_len = 0
        for pred, target in zip(preds, targets, strict=True):
            hyp, ref = tokenize(pred), tokenize(target)
            pred_len += len(hyp)
            target_len += len(ref)
            for n in range(1, self.n_gram + 1):
                hyp_grams, ref_grams = ngram_counts(hyp, n), ngram_counts(ref, n)
                # Clipping: an n-gram earns at most as many matches as the reference holds.
                correct[n - 1] += sum(min(k, ref_grams[g]) for g, k in hyp_grams.items())
                total[n - 1] += max(0, len(hyp) - n + 1)
        self.correct += torch.tensor(correct, dtype=torch.long, device=self.correct.device)
        self.total += torch.tensor(total, dtype=torch.long, device=self.total.device)
        self.pred_len += pred_len
        self.target_len += target_len

    def compute(self) -> torch.Tensor:
        """Corpus BLEU over every sample seen since the last reset (0 before any update)."""
        score = bleu_from_counts(
            self.correct.tolist(),
            self.total.tolist(),
            int(self.pred_len),
            int(self.target_len),
            smooth=self.smooth,
        )
        return torch.tensor(score, dtype=torch.float32)
