"""What a local update reports: its losses (overall, last, per phase) and the steps it took."""

from __future__ import annotations

import math


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
