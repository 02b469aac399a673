"""Loss-threshold membership inference (Yeom et al., 2018), the audit's maths.

The attacker guesses "member" when a sample's loss is below a threshold; sweeping the
threshold gives a ROC curve whose area is the probability that a random training sample has a
lower loss than a random held-out one (ties count one half): the Mann–Whitney statistic. AUC
0.5 means the model's losses tell members from non-members no better than chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

IGNORE_INDEX = -100


def loss_threshold_auc(member_losses: Sequence[float], nonmember_losses: Sequence[float]) -> float:
    """``P(loss_member < loss_nonmember) + ½·P(equal)`` over all pairs (the attack's ROC AUC).

    Raises:
        ValueError: Either set is empty.
    """
    if not member_losses or not nonmember_losses:
        raise ValueError("membership AUC needs at least one member and one non-member loss")
    m = torch.tensor([float(x) for x in member_losses], dtype=torch.float64)
    n = torch.tensor([float(x) for x in nonmember_losses], dtype=torch.float64)
    less = (m[:, None] < n[None, :]).double().sum()
    ties = (m[:, None] == n[None, :]).double().sum()
    return float((less + 0.5 * ties) / (len(m) * len(n)))


def per_sample_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's mean next-token cross-entropy over its labelled positions (the LM loss of a
    batch of one), float64; a row with no labelled position gets NaN."""
    shift_logits = logits[:, :-1].double()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.masked_fill(~mask, 0)
    logp = torch.log_softmax(shift_logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    nll = -(logp * mask).sum(dim=1)
    return nll / mask.sum(dim=1)


@torch.no_grad()
def model_losses(
    method: Any, collator: Any, samples: Sequence[Any], batch_size: int = 16
) -> list[float]:
    """Per-sample losses of the model loaded in ``method`` (eval mode, the family's routing)."""
    out = [float("nan")] * len(samples)
    device = next(method.model.parameters()).device
    for start in range(0, len(samples), batch_size):
        idx = range(start, min(start + batch_size, len(samples)))
        # A batch is all-image or all-text (the collator's rule): group by that.
        for group in (
            [i for i in idx if samples[i].image is not None],
            [i for i in idx if samples[i].image is None],
        ):
            if not group:
                continue
            batch = collator([samples[i] for i in group])
            inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            with method.forward_context(batch):
                logits = method.model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
            for i, loss in zip(
                group, per_sample_losses(logits, inputs["labels"]).tolist(), strict=True
            ):
                out[i] = loss
    return out
