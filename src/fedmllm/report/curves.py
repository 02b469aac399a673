"""Per-round series from a run's ``history``: train loss per client and drift quantities.

``history`` entries come in two kinds (both may share a round): evaluation entries
``{round, scores}`` and round entries ``{round, train: {client: metrics}, drift: {...}}``
written by the simulator (``federation/drift.py`` defines the drift quantities).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from fedmllm.report.collect import Run

Series = dict[int, float]

DRIFT_QUANTITIES = ("variance", "dist_global", "dist_mean", "cos_pairwise")
DRIFT_LABELS = {
    "variance": "variance of local adapters",
    "dist_global": "‖local − global‖_F",
    "dist_mean": "‖local − client mean‖_F",
    "cos_pairwise": "cosine between updates",
}


def train_loss(run: Run, metric: str = "loss") -> dict[str, Series]:
    """``{client: {round: loss}}`` from the round entries of the history."""
    out: dict[str, Series] = {}
    for entry in run.history:
        for cid, m in entry.get("train", {}).items():
            if metric in m:
                out.setdefault(cid, {})[int(entry["round"])] = float(m[metric])
    return out


def _drift_value(drift: dict[str, Any], name: str) -> float | None:
    """A round's scalar for ``name``: the value, the mean over clients, or the mean cosine."""
    if name == "cos_pairwise":
        matrix = drift.get(name)
        if not matrix:
            return None
        off = [v for i, r in enumerate(matrix) for j, v in enumerate(r) if i != j and v is not None]
        return statistics.fmean(off) if off else None
    value = drift.get(name)
    if isinstance(value, dict):
        vals = [v for v in value.values() if v is not None]
        return statistics.fmean(vals) if vals else None
    return None if value is None else float(value)


def drift_series(run: Run, name: str) -> Series:
    """``{round: value}`` of one drift quantity (clients averaged)."""
    out: Series = {}
    for entry in run.history:
        if "drift" in entry:
            v = _drift_value(entry["drift"], name)
            if v is not None:
                out[int(entry["round"])] = v
    return out


def mean_series(series: Sequence[Series]) -> tuple[list[int], list[float]]:
    """Mean over seeds at the rounds every seed has (ragged runs are cut to the common rounds)."""
    present = [s for s in series if s]
    if not present:
        return [], []
    rounds = sorted(set.intersection(*(set(s) for s in present)))
    return rounds, [statistics.fmean(s[r] for s in present) for r in rounds]
