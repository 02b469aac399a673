"""Corpus BLEU as defined by sacreBLEU (Papineni et al., 2002), with the project tokeniser."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from fedmllm.metrics._inputs import Target, check_pairs, references
from fedmllm.metrics.base import TextMetric
from fedmllm.metrics.normalize import tokenize


def ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Multiset of the n-grams of a token sequence."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def closest_ref_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """The reference length closest to the prediction's; ties go to the shorter (sacreBLEU)."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def sentence_stats(
    hyp: Sequence[str], refs: Sequence[Sequence[str]], n_gram: int
) -> tuple[list[int], list[int], int, int]:
    """Clipped matches and predicted n-grams per order 1..N, prediction and reference length.

    With several references an n-gram is clipped at its largest count in any one reference,
    and the reference length is the one closest to the prediction's (sacreBLEU's rules).

    Args:
        hyp: Prediction tokens.
        refs: Token lists of the references (at least one).
        n_gram: Highest order N.

    Returns:
        ``(correct, total, pred_len, ref_len)``.
    """
    correct, total = [0] * n_gram, [0] * n_gram
    for n in range(1, n_gram + 1):
        max_ref: Counter[tuple[str, ...]] = Counter()
        for ref in refs:
            max_ref |= ngram_counts(ref, n)  # | keeps the larger count of each n-gram
        hyp_grams = ngram_counts(hyp, n)
        # Clipping: an n-gram earns at most as many matches as a reference holds.
        correct[n - 1] = sum(min(k, max_ref[g]) for g, k in hyp_grams.items())
        total[n - 1] = max(0, len(hyp) - n + 1)
    return correct, total, len(hyp), closest_ref_length(len(hyp), [len(r) for r in refs])


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


class Bleu(TextMetric):
    """Corpus BLEU-N (cumulative, uniform weights), reported in [0, 1] (sacreBLEU x 0.01).

    The sacreBLEU definition: clipped n-gram matches and predicted n-gram counts are summed
    over the whole corpus for each order 1..N; BLEU is the brevity penalty
    ``min(1, exp(1 - ref_len / pred_len))`` (lengths summed over the corpus) times the
    geometric mean of the N precisions. Not an average of sentence BLEU. Several references
    per prediction are supported: clipping against the largest count in any one reference,
    the reference length closest to the prediction's (ties: the shorter).

    Tokenisation: :func:`~fedmllm.metrics.normalize.tokenize` — lower-case, words, hyphenated
    words and decimal numbers kept whole, each other punctuation mark a token; the spirit of
    sacreBLEU's "13a" on lower-cased text.

    Args:
        n_gram: Highest n-gram order N (4 for BLEU-4).
        smooth: Apply sacreBLEU's "exp" smoothing (see :func:`bleu_from_counts`); off by
            default, as in the BLEU paper.
        all_orders: Return ``{"bleu1": ..., "bleuN": ...}`` — cumulative BLEU-1..N from the
            same counts, as report-generation papers list them — instead of BLEU-N alone.
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    Per sample (for reading predictions, not for the corpus score): sentence BLEU from the
    sample's own counts with "exp" smoothing, since unsmoothed sentence BLEU is 0 for most
    short sentences.
    """

    correct: torch.Tensor
    total: torch.Tensor
    pred_len: torch.Tensor
    target_len: torch.Tensor

    def __init__(
        self, n_gram: int = 4, smooth: bool = False, all_orders: bool = False, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        if n_gram < 1:
            raise ValueError(f"n_gram must be >= 1, got {n_gram}")
        self.n_gram = n_gram
        self.smooth = smooth
        self.all_orders = all_orders
        zeros = torch.zeros(n_gram, dtype=torch.long)
        self.add_sums(correct=zeros, total=zeros.clone(), pred_len=0, target_len=0)

    def _orders(self) -> range:
        return range(1, self.n_gram + 1) if self.all_orders else range(self.n_gram, self.n_gram + 1)

    def update(self, preds: Sequence[str], targets: Sequence[Target]) -> None:
        """Add one batch's n-gram statistics.

        Args:
            preds: Generated texts.
            targets: Reference text(s), one entry per prediction.
        """
        check_pairs(preds, targets)
        correct = [0] * self.n_gram
        total = [0] * self.n_gram
        pred_len = target_len = 0
        per_sample: dict[str, list[float | None]] = {f"bleu{n}": [] for n in self._orders()}
        for pred, target in zip(preds, targets, strict=True):
            refs = [tokenize(r) for r in references(target)]
            c, t, hl, rl = sentence_stats(tokenize(pred), refs, self.n_gram)
            correct = [a + b for a, b in zip(correct, c, strict=True)]
            total = [a + b for a, b in zip(total, t, strict=True)]
            pred_len += hl
            target_len += rl
            for n in self._orders():
                per_sample[f"bleu{n}"].append(bleu_from_counts(c[:n], t[:n], hl, rl, smooth=True))
        self.correct += torch.tensor(correct, dtype=torch.long, device=self.correct.device)
        self.total += torch.tensor(total, dtype=torch.long, device=self.total.device)
        self.pred_len += pred_len
        self.target_len += target_len
        self.last_sample_scores = (
            per_sample if self.all_orders else per_sample[f"bleu{self.n_gram}"]
        )

    def compute(self) -> torch.Tensor | dict[str, torch.Tensor]:
        """Corpus BLEU over every sample seen since the last reset (0 before any update)."""
        correct, total = self.correct.tolist(), self.total.tolist()
        scores = {
            f"bleu{n}": torch.tensor(
                bleu_from_counts(
                    correct[:n], total[:n], int(self.pred_len), int(self.target_len), self.smooth
                ),
                dtype=torch.float32,
            )
            for n in self._orders()
        }
        return scores if self.all_orders else scores[f"bleu{self.n_gram}"]
