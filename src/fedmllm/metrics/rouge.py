"""ROUGE-N and ROUGE-L F-measures (Lin, 2004) per sample, averaged, with the project tokeniser."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmllm.metrics._inputs import Target, check_pairs, references
from fedmllm.metrics.base import TextMetric
from fedmllm.metrics.bleu import ngram_counts
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


def rouge_n(
    pred_tokens: Sequence[str], target_tokens: Sequence[str], n: int
) -> tuple[float, float, float]:
    """Sentence ROUGE-N precision, recall and F-measure (beta = 1).

    ``overlap = sum over n-grams of min(count in pred, count in target)``;
    ``P = overlap / pred n-grams``, ``R = overlap / target n-grams``, ``F = 2PR / (P + R)``;
    all 0 when either side has no n-gram or nothing is shared, as in the rouge-score package.

    Args:
        pred_tokens: Tokens of the prediction.
        target_tokens: Tokens of the reference.
        n: The n-gram order.

    Returns:
        ``(precision, recall, fmeasure)``.
    """
    pred_grams, target_grams = ngram_counts(pred_tokens, n), ngram_counts(target_tokens, n)
    if not pred_grams or not target_grams:
        return 0.0, 0.0, 0.0
    overlap = sum((pred_grams & target_grams).values())
    if overlap == 0:
        return 0.0, 0.0, 0.0
    p, r = overlap / sum(pred_grams.values()), overlap / sum(target_grams.values())
    return p, r, 2 * p * r / (p + r)


ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


def rouge_f(pred_tokens: Sequence[str], target_tokens: Sequence[str], key: str) -> float:
    """The F-measure of one ROUGE variant: ``rouge<n>`` (n-grams) or ``rougeL`` (LCS)."""
    if key == "rougeL":
        return rouge_l(pred_tokens, target_tokens)[2]
    if key.startswith("rouge") and key[5:].isdigit() and int(key[5:]) >= 1:
        return rouge_n(pred_tokens, target_tokens, int(key[5:]))[2]
    raise ValueError(f"unknown ROUGE key {key!r}; expected rouge1, rouge2, ... or rougeL")


def _words(text: str) -> list[str]:
    return tokenize(text, punctuation=False)


class Rouge(TextMetric):
    """Mean over samples of sentence-level ROUGE F-measures (beta = 1), in [0, 1].

    Tokenisation: :func:`~fedmllm.metrics.normalize.tokenize` with ``punctuation=False`` —
    the BLEU tokens without punctuation marks, as the rouge-score package also drops
    punctuation (it differs from rouge-score only in keeping hyphenated words and decimal
    numbers whole, where rouge-score splits them at the mark). No stemming. With several
    references a sample takes, for each key separately, the best F (rouge-score's
    ``score_multi``).

    Args:
        keys: Variants to compute: ``rouge<n>`` for n-gram overlap, ``rougeL`` for the longest
            common subsequence (sentence-level, not rougeLsum).
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    ``compute()`` returns ``{key: mean F}`` (0 before any update). Per sample: each key's F.
    """

    f_sum: torch.Tensor
    total: torch.Tensor

    def __init__(self, keys: Sequence[str] = ROUGE_KEYS, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.keys = tuple(keys)
        if not self.keys:
            raise ValueError("Rouge needs at least one key")
        for key in self.keys:
            rouge_f(["a"], ["a"], key)  # raises on an unknown key, here rather than mid-run
        self.add_sums(f_sum=torch.zeros(len(self.keys), dtype=torch.float64), total=0)

    def update(self, preds: Sequence[str], targets: Sequence[Target]) -> None:
        """Add one batch's sentence scores.

        Args:
            preds: Generated texts.
            targets: Reference text(s), one entry per prediction.
        """
        check_pairs(preds, targets)
        per_sample: dict[str, list[float | None]] = {k: [] for k in self.keys}
        for pred, target in zip(preds, targets, strict=True):
            hyp, refs = _words(pred), [_words(r) for r in references(target)]
            for key in self.keys:
                per_sample[key].append(max(rouge_f(hyp, ref, key) for ref in refs))
        sums = [sum(per_sample[k]) for k in self.keys]  # type: ignore[arg-type]
        self.f_sum += torch.tensor(sums, dtype=torch.float64, device=self.f_sum.device)
        self.total += len(preds)
        self.last_sample_scores = per_sample

    def compute(self) -> dict[str, torch.Tensor]:
        """Mean F of each key over every sample seen since the last reset."""
        means = (self.f_sum / self.total.clamp_min(1)).float()
        return {k: means[i] for i, k in enumerate(self.keys)}


class RougeL(Rouge):
    """Mean over samples of the sentence-level ROUGE-L F-measure, as a scalar (see :class:`Rouge`).

    Args:
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    ``compute()`` returns the mean F-measure as a scalar tensor (0 before any update).
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(keys=("rougeL",), **kwargs)

    def update(self, preds: Sequence[str], targets: Sequence[Target]) -> None:
        """Add one batch's sentence scores (see :meth:`Rouge.update`)."""
        super().update(preds, targets)
        assert isinstance(self.last_sample_scores, dict)
        self.last_sample_scores = self.last_sample_scores["rougeL"]

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        """Mean ROUGE-L F over every sample seen since the last reset."""
        return super().compute()["rougeL"]
