"""Runs → one comparison per benchmark: rows of methods, mean ± std over seeds, Δ vs Standalone.

Everything here is plain numbers (fractions in [0, 1] as in ``results.json``); formatting for
the console and the exports lives in ``cells.py``, ``console.py`` and ``export.py``.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from fedmllm.report.collect import GROUP_ORDER, REFERENCE, Run

AVG = "Avg"


@dataclass
class Stat:
    """Mean and sample standard deviation (n − 1) over seeds; ``std`` is None for one seed."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n > 1 else None


@dataclass
class Row:
    """One method (variant) over its seeds."""

    group: str
    method: str
    label: str
    runs: list[Run]
    scores: dict[str, Stat]  # client id (and AVG) → main metric over seeds
    delta: dict[str, float | None] = field(default_factory=dict)  # mean − reference mean
    below_reference: list[str] = field(default_factory=list)  # clients where "1+1<1"
    reference: Row | None = None  # the row Δ is taken against

    @property
    def variant(self) -> str:
        return self.runs[0].variant

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)

    def cost(self, attr: str) -> Stat:
        """A cost over seeds: ``up_per_round``, ``down_per_round``, ``total_bytes``,
        ``round_s`` (mean round time, if recorded), or a ``Run`` field (``wall_s``, ...)."""
        values = []
        for r in self.runs:
            if attr == "up_per_round":
                values.append(r.up_bytes / max(r.rounds, 1))
            elif attr == "down_per_round":
                values.append(r.down_bytes / max(r.rounds, 1))
            elif attr == "total_bytes":
                values.append(float(r.up_bytes + r.down_bytes))
            elif attr == "round_s":  # training + aggregation, without building caches or eval
                rounds = [h["wall_s"] for h in r.history if "wall_s" in h and "train" in h]
                if rounds:
                    values.append(statistics.fmean(rounds))
            else:
                values.append(float(getattr(r, attr)))
        return Stat(values)


@dataclass
class Comparison:
    """All rows of one benchmark, the client columns and the reference row."""

    benchmark: str
    clients: list[str]
    metrics: dict[str, str]  # client id → main metric name
    rows: list[Row]
    reference: Row | None  # the default reference (rows may have their own, see Row.reference)
    best: dict[str, set[str]] = field(default_factory=dict)  # column → labels in bold

    @property
    def columns(self) -> list[str]:
        return [*self.clients, AVG]


def _row(runs: list[Run], clients: list[str]) -> Row:
    first = runs[0]
    scores = {}
    for cid in clients:
        vals = [r.clients[cid].value for r in runs if cid in r.clients]
        if vals:
            scores[cid] = Stat(vals)
    scores[AVG] = Stat([r.avg for r in runs])
    return Row(first.group, first.method, first.display, runs, scores)


def _assign_references(rows: list[Row], name: str) -> Row | None:
    """Give every row its Δ reference; return the default one.

    In an ablation (``method.r=4,16`` over Standalone and FedAvg) a row is compared with the
    reference row of the same variant; rows without one use the default configuration's
    (no distinguishing overrides), the floor the paper uses.
    """
    candidates = sorted(
        (r for r in rows if r.method == name), key=lambda r: (r.variant != "", _natural(r.label))
    )
    default = candidates[0] if candidates else None
    by_variant = {r.variant: r for r in candidates}
    for row in rows:
        row.reference = None if row.method == name else by_variant.get(row.variant, default)
    return default


def _natural(text: str) -> list[str | float]:
    """Sort key with numbers compared as numbers: ``r=4`` before ``r=16``."""
    parts: list[str | float] = re.split(r"(\d+(?:\.\d+)?(?:e-?\d+)?)", text)
    return [float(p) if i % 2 else p for i, p in enumerate(parts)]


def _mark(rows: list[Row], columns: list[str]) -> dict[str, set[str]]:
    """Fill Δ and the "1+1<1" flags; return the best label(s) per column."""
    for row in rows:
        for col in columns:
            ref = row.reference.scores.get(col) if row.reference is not None else None
            mine = row.scores.get(col)
            if ref is None or mine is None:
                row.delta[col] = None
                continue
            row.delta[col] = mine.mean - ref.mean
            if col != AVG and row.group != REFERENCE and row.delta[col] < 0:
                row.below_reference.append(col)
    best: dict[str, set[str]] = {}
    # Centralized pools everyone's data: a ceiling, not a contender for bold.
    contenders = [r for r in rows if r.method != "centralized"]
    for col in columns:
        means = {r.label: r.scores[col].mean for r in contenders if col in r.scores}
        finite = [m for m in means.values() if not math.isnan(m)]
        if finite:
            top = max(finite)
            best[col] = {lab for lab, m in means.items() if m == top}
    return best


def compare(runs: Sequence[Run], reference: str = "standalone") -> list[Comparison]:
    """Group runs into rows (method + variant, over seeds), one comparison per benchmark.

    Args:
        runs: Loaded runs (``collect``); variants must already be labelled.
        reference: Method name of the Δ reference row (Standalone, the paper's floor).
    """
    by_bench: dict[str, list[Run]] = {}
    for r in runs:
        by_bench.setdefault(r.benchmark, []).append(r)
    out = []
    for bench, bench_runs in sorted(by_bench.items()):
        clients: list[str] = []
        metrics: dict[str, str] = {}
        for r in bench_runs:
            for cid, c in r.clients.items():
                if cid not in metrics:
                    clients.append(cid)
                    metrics[cid] = c.metric
        groups: dict[tuple[str, str], list[Run]] = {}
        for r in bench_runs:
            groups.setdefault((r.method, r.variant), []).append(r)
        rows = [_row(sorted(g, key=lambda r: r.seed), clients) for g in groups.values()]
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        rows.sort(
            key=lambda r: (
                order.get(r.group, len(order)),
                r.group,
                r.method != reference,
                r.method == "centralized",
                _natural(r.label),
            )
        )
        ref = _assign_references(rows, reference)
        comp = Comparison(bench, clients, metrics, rows, ref)
        comp.best = _mark(rows, comp.columns)
        out.append(comp)
    return out
