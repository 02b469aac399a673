"""VQA metrics beyond exact match: closed-ended accuracy and macro-F1, open-ended recall,
and token accuracy.

Closed-ended means the sample's own ``answer_type`` field says ``"closed"`` (SLAKE and
VQA-RAD carry one); a sample without that field is closed when its reference is "yes" or
"no". Never "at most two words" — that rule counts "left lung" as closed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from fedmllm.metrics._inputs import Target, check_answer_types, check_pairs, references
from fedmllm.metrics.base import TextMetric
from fedmllm.metrics.normalize import normalize_answer, tokenize

YES_NO = ("yes", "no")


def is_closed(answer_type: str | None, refs: Sequence[str]) -> bool:
    """Whether a sample is closed-ended: its ``answer_type``, else a yes/no reference.

    Args:
        answer_type: ``"closed"``, ``"open"`` or None (the data set has no such field).
        refs: The sample's references.

    Returns:
        True for a closed-ended sample.
    """
    if answer_type is not None:
        return answer_type == "closed"
    return all(normalize_answer(r) in YES_NO for r in refs)


class _AnswerKindMetric(TextMetric):
    """A per-sample score over the samples of one answer kind; None for the other kind.

    Subclasses set :attr:`closed` (which kind they score) and :attr:`score_key` (the name of
    the per-sample scores), and implement :meth:`_score` and :meth:`_add`; ``total`` counts
    the samples scored.
    """

    closed: bool
    score_key: str
    total: torch.Tensor

    def update(
        self,
        preds: Sequence[str],
        targets: Sequence[Target],
        answer_types: Sequence[str | None] | None = None,
    ) -> None:
        """Score the samples of this metric's answer kind in one batch.

        Args:
            preds: Generated answers.
            targets: Reference answer(s), one entry per prediction.
            answer_types: Each sample's ``answer_type`` (``"closed"``/``"open"``/None).
        """
        check_pairs(preds, targets)
        types = check_answer_types(answer_types, len(preds))
        per_sample: list[float | None] = []
        for pred, target, answer_type in zip(preds, targets, types, strict=True):
            refs = references(target)
            scored = is_closed(answer_type, refs) == self.closed
            per_sample.append(self._score(pred, refs) if scored else None)
        scores = [s for s in per_sample if s is not None]
        self._add(scores)
        self.total += len(scores)
        self.last_sample_scores = {self.score_key: per_sample}

    def _score(self, pred: str, refs: list[str]) -> float:
        """One sample's score (its references as given)."""
        raise NotImplementedError

    def _add(self, scores: list[float]) -> None:
        """Add one batch's scores to the summed state."""
        raise NotImplementedError


class ClosedEnded(_AnswerKindMetric):
    """Accuracy and macro-F1 on the closed-ended samples; open ones are ignored.

    Both sides are normalised with :func:`~fedmllm.metrics.normalize.normalize_answer`; a
    prediction is correct when it equals the (first matching) reference. Macro-F1 runs over
    ``classes``: a prediction outside them is a miss for the true class and a false positive
    for none; a closed reference outside them (e.g. "ct" in "Is this a CT or an MRI?") counts
    in the accuracy only. Per class ``F1 = 2TP / (2TP + FP + FN)``; the macro average takes
    the classes that occurred (as reference or prediction), so an absent class neither helps
    nor hurts.

    Args:
        classes: The label set of the F1 (normalised). Default yes/no.
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    ``compute()`` returns ``{"closed_acc", "closed_f1", "n_closed"}``; the two scores are 0
    when there was no closed sample (``n_closed`` says so). Per sample: 1/0, None if open.
    """

    closed = True
    score_key = "closed_acc"
    correct: torch.Tensor
    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor

    def __init__(self, classes: Sequence[str] = YES_NO, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.classes = tuple(normalize_answer(c) for c in classes)
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct non-empty answers, got {list(classes)}")
        self._index = {c: i for i, c in enumerate(self.classes)}
        zeros = torch.zeros(len(self.classes), dtype=torch.long)
        self.add_sums(tp=zeros, fp=zeros.clone(), fn=zeros.clone(), correct=0, total=0)

    def _score(self, pred: str, refs: list[str]) -> float:
        """1 when the prediction equals a reference (normalised); counts the F1 cells."""
        refs = [normalize_answer(r) for r in refs]
        p = normalize_answer(pred)
        gold = p if p in refs else refs[0]  # the reference the prediction is judged against
        pi, gi = self._index.get(p), self._index.get(gold)
        if pi is not None and pi == gi:
            self.tp[pi] += 1
        else:
            if pi is not None:
                self.fp[pi] += 1
            if gi is not None:
                self.fn[gi] += 1
        return float(p == gold)

    def _add(self, scores: list[float]) -> None:
        self.correct += int(sum(scores))

    def compute(self) -> dict[str, torch.Tensor]:
        """Closed-ended accuracy, macro-F1 and the number of closed samples."""
        denom = 2 * self.tp + self.fp + self.fn
        seen = denom > 0
        f1 = (2 * self.tp[seen]).double() / denom[seen].double()
        macro = f1.mean() if seen.any() else torch.tensor(0.0, dtype=torch.float64)
        return {
            "closed_acc": self.correct.float() / self.total.clamp_min(1),
            "closed_f1": macro.float(),
            "n_closed": self.total.clone(),
        }


def answer_tokens(text: str) -> list[str]:
    """Words of a short answer after :func:`normalize_answer` (articles and punctuation gone)."""
    return normalize_answer(text).split()


def token_recall(pred: str, ref: str) -> float:
    """Fraction of the reference's words found in the prediction (multiset, clipped).

    ``"left lung"`` against the prediction ``"the lung"`` is 1/2. A reference word repeated
    twice needs two copies in the prediction. 0 for an empty reference.
    """
    ref_words = Counter(answer_tokens(ref))
    if not ref_words:
        return 0.0
    found = ref_words & Counter(answer_tokens(pred))
    return sum(found.values()) / sum(ref_words.values())


class OpenRecall(_AnswerKindMetric):
    """Mean recall of reference words in the prediction over open-ended samples.

    The open-set measure of medical VQA papers (e.g. LLaVA-Med): for each open sample, the
    fraction of the reference's normalised words (see :func:`token_recall`) that appear in the
    prediction; with several references the best. Closed samples are ignored (see
    :func:`is_closed`).

    ``compute()`` returns ``{"open_recall", "n_open"}`` (recall 0 when there was no open sample).
    Per sample: the recall, None if closed.
    """

    closed = False
    score_key = "open_recall"
    recall_sum: torch.Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_sums(recall_sum=0.0, total=0)

    def _score(self, pred: str, refs: list[str]) -> float:
        """The best :func:`token_recall` over the references."""
        return max(token_recall(pred, r) for r in refs)

    def _add(self, scores: list[float]) -> None:
        self.recall_sum += sum(scores)

    def compute(self) -> dict[str, torch.Tensor]:
        """Mean open-ended recall and the number of open samples."""
        return {
            "open_recall": (self.recall_sum / self.total.clamp_min(1)).float(),
            "n_open": self.total.clone(),
        }


def positional_matches(pred: Sequence[str], ref: Sequence[str]) -> tuple[int, int]:
    """``(tokens equal at the same position, max(len(pred), len(ref)))``."""
    return sum(a == b for a, b in zip(pred, ref, strict=False)), max(len(pred), len(ref))


class TokenAccuracy(TextMetric):
    """Token accuracy as UniFLoW reports it: the share of tokens that match the reference token
    at the same position.

    Tokens come from :func:`~fedmllm.metrics.normalize.tokenize` (the BLEU tokens, punctuation
    kept). Counted over the whole corpus: ``sum(matches) / sum(max(len(pred), len(ref)))``.
    The denominator is the longer side, so missing tokens and extra tokens both count as
    errors (with the prediction's length alone, answering "the" to "the left lung" would score
    100 %). With several references, each sample uses the one with the best ratio. A sample
    where both sides are empty adds nothing.

    ``compute()`` returns a scalar in [0, 1]. Per sample: its own ratio (None if both empty).
    """

    matched: torch.Tensor
    total: torch.Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_sums(matched=0, total=0)

    def update(self, preds: Sequence[str], targets: Sequence[Target]) -> None:
        """Count positional token matches of one batch."""
        check_pairs(preds, targets)
        per_sample: list[float | None] = []
        matched = total = 0
        for pred, target in zip(preds, targets, strict=True):
            hyp = tokenize(pred)
            counts = [positional_matches(hyp, tokenize(r)) for r in references(target)]
            m, n = max(counts, key=lambda c: (c[0] / c[1] if c[1] else 0.0, -c[1]))
            matched += m
            total += n
            per_sample.append(m / n if n else None)
        self.matched += matched
        self.total += total
        self.last_sample_scores = per_sample

    def compute(self) -> torch.Tensor:
        """Token accuracy over every token seen since the last reset."""
        return self.matched.float() / self.total.clamp_min(1)
