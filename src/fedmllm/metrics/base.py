"""The base class of the text metrics: summed states plus per-sample scores of the last batch."""

from __future__ import annotations

from torchmetrics import Metric

SampleScores = list[float | None] | dict[str, list[float | None]]
"""Per-sample values of the last ``update``: a list for a metric that computes one scalar, a
dict keyed like ``compute()`` for a metric that computes a dict. None: not applicable (e.g.
closed-ended accuracy of an open question)."""


class TextMetric(Metric):
    """A ``torchmetrics.Metric`` over generated text that can also explain itself per sample.

    Subclasses keep only summed states (so batches and processes merge exactly) and set
    :attr:`last_sample_scores` in every ``update``, which the evaluator writes beside each
    prediction so a user can read which samples failed.

    Class attributes:
        expensive: True for metrics that run a model (BERTScore, the LLM judge); the trivial
            baseline skips them.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    expensive = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.last_sample_scores: SampleScores = []
