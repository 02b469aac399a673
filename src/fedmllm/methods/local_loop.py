"""The local step loop every adapter method runs (the part of ``AdapterMethod`` that trains).

One local step is one optimiser step over ``grad_accum`` micro-batches: the groups it trains
are the family's ``trainable_groups`` at that step intersected with what the batches reach;
the loss is the family's task loss plus its regulariser plus the add-ons' terms, under the
Fabric's autocast; gradients are clipped to a global norm; the add-ons act after the step.
A step whose batches reach nothing it should train is skipped.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from fedmllm.protocol import Batches, LrAt, Optimizer

if TYPE_CHECKING:
    from fedmllm.methods.base import AdapterMethod


class LocalRecord:
    """Accumulates one local update's step losses and learning rates.

    Attributes:
        lr_sum: Sum of the learning rates of the steps that trained (SCAFFOLD's Σ η).
    """

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.by_phase: dict[str, list[float]] = {}
        self.lr_sum = 0.0
        self.skipped = 0

    def add(self, loss: float, lr: float, phase: str | None = None) -> None:
        """A step that trained, with its task loss and learning rate."""
        self.losses.append(loss)
        self.lr_sum += lr
        if phase is not None:
            self.by_phase.setdefault(phase, []).append(loss)

    def skip(self) -> None:
        """A step whose batch could reach nothing the schedule wanted trained."""
        self.skipped += 1

    def metrics(self) -> dict[str, float]:
        """``loss`` (mean), ``loss_last``, ``loss_<phase>``, ``steps_trained``/``_skipped``."""
        out = {
            "loss": sum(self.losses) / len(self.losses) if self.losses else math.nan,
            "loss_last": self.losses[-1] if self.losses else math.nan,
        }
        out.update({f"loss_{p}": sum(v) / len(v) for p, v in self.by_phase.items()})
        out["steps_trained"] = float(len(self.losses))
        out["steps_skipped"] = float(self.skipped)
        return out


def step_loss(
    method: AdapterMethod, fabric: Any, batch: dict[str, Any], step: int
) -> tuple[Any, float]:
    """The step's total loss (task + family regulariser + add-on terms) and its task part."""
    with fabric.autocast():
        loss = method.local_loss(batch, step)
        total = loss
        extra = method.extra_loss()
        if extra is not None:
            total = total + extra
        for addon in method.addons:
            term = addon.loss_term()
            if term is not None:
                total = total + term
    return total, loss.item()


def _train_step(
    method: AdapterMethod,
    fabric: Any,
    micro: list[dict[str, Any]],
    step: int,
    optimizer: Optimizer,
) -> float:
    """Forward and backward over the micro-batches that reach a trained group; the mean task
    loss. The optimiser's gradients are zeroed first and not stepped here."""
    optimizer.zero_grad(set_to_none=True)
    losses = []
    for batch in micro:
        total, loss = step_loss(method, fabric, batch, step)
        fabric.backward(total if method.grad_accum == 1 else total / method.grad_accum)
        losses.append(loss)
    return sum(losses) / len(losses)


def run_local_update(
    method: AdapterMethod,
    fabric: Any,
    batches: Batches,
    num_steps: int,
    optimizer: Optimizer,
    lr_at: LrAt,
) -> dict[str, float]:
    """Run ``method``'s local update: ``num_steps`` optimiser steps; returns its metrics."""
    trainable = method.trainable_parameters()
    method.begin_local(num_steps)
    for addon in method.addons:
        addon.begin_local(trainable)
    record = LocalRecord()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    active: frozenset[str] | None = None
    private = next((a for a in method.addons if hasattr(a, "train_step")), None)
    try:
        for step in range(num_steps):
            micro = [fabric.to_device(next(batches)) for _ in range(method.grad_accum)]
            reach = [method.groups_reached(b) for b in micro]
            wanted = method.trainable_groups(step, num_steps, *method.current_round)
            groups = wanted & frozenset().union(*reach)
            if not groups:
                record.skip()
                continue
            if groups != active:
                method.set_trainable(groups)
                active = groups
            lr = lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # A micro-batch that reaches nothing trained has no graph to differentiate.
            useful = [b for b, r in zip(micro, reach, strict=True) if r & groups]
            if private is not None:  # DP-SGD: per-sample clipping and noise replace both
                loss = private.train_step(method, fabric, useful, step, optimizer)
            else:
                loss = _train_step(method, fabric, useful, step, optimizer)
            if method.grad_clip > 0 and private is None:
                torch.nn.utils.clip_grad_norm_(params, method.grad_clip)
            optimizer.step()
            for addon in method.addons:
                addon.after_step(lr)
            record.add(loss, lr, method.phase_name(step, num_steps))
    finally:
        for p in trainable.values():
            p.requires_grad_(True)
        method.end_local()
    for addon in method.addons:
        addon.end_local(record.lr_sum)
    out = {**record.metrics(), **method.local_metrics()}
    for addon in method.addons:
        out.update(addon.metrics())
    return out
