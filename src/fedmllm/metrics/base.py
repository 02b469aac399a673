"""The base class of the text metrics: summed states plus per-sample scores of the last batch."""

from __future__ import annotations

import torch
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

    def add_sums(self, **defaults: int | float | torch.Tensor) -> None:
        """Register states that batches and processes merge by addition, in the given order.

        ``0`` starts a long counter, ``0.0`` a float64 sum (so that summing scores over a long
        evaluation loses nothing), a tensor starts as that tensor.
        """
        for name, default in defaults.items():
            if not isinstance(default, torch.Tensor):
                dtype = torch.long if isinstance(default, int) else torch.float64
                default = torch.tensor(default, dtype=dtype)
            self.add_state(name, default=default, dist_reduce_fx="sum")
