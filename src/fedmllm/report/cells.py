"""A comparison as text cells, once, for every renderer (console, Markdown, LaTeX).

Scores are shown in percent with two decimals, as in the paper; Δ is in percentage points
with ↑/↓; the best mean of each column (among all rows but Centralized) is bold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedmllm.report.collect import REFERENCE
from fedmllm.report.compare import AVG, Comparison, Row, Stat

FLAG = "1+1<1"


@dataclass
class Cell:
    """One table cell: its text and whether it is the best of its column."""

    text: str
    bold: bool = False


@dataclass
class Section:
    """A block of rows under a group heading (``Reference``, ``Global``, ...)."""

    title: str
    rows: list[list[Cell]] = field(default_factory=list)


@dataclass
class TableSpec:
    """Header, sections of rows, and notes printed under the table."""

    title: str
    header: list[str]
    sections: list[Section]
    notes: list[str] = field(default_factory=list)
    numeric_from: int = 1  # columns from here on are right-aligned


def stat_cell(s: Stat | None, scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` (std only over several seeds)."""
    if s is None:
        return "—"
    text = f"{scale * s.mean:.{digits}f}"
    return text if s.std is None else f"{text} ± {scale * s.std:.{digits}f}"


def delta_cell(d: float | None) -> str:
    """Δ in percentage points with an arrow; ``—`` for the reference itself."""
    if d is None:
        return "—"
    arrow = "↑" if d > 0 else ("↓" if d < 0 else "=")
    return f"{100 * d:+.2f} {arrow}"


def human_bytes(n: float) -> str:
    """Bytes with a binary unit (B, KiB, MiB, GiB)."""
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def _score_cells(comp: Comparison, row: Row) -> list[Cell]:
    cells = []
    for col in comp.columns:
        stat = row.scores.get(col)
        cells.append(Cell(stat_cell(stat), bold=row.label in comp.best.get(col, set())))
        cells.append(Cell(delta_cell(row.delta.get(col))))
    return cells


def comparison_spec(comp: Comparison) -> TableSpec:
    """The paper-style table: methods × (client score, Δ) … Avg, Δ, and the 1+1<1 count."""
    header = ["Method", "seeds"]
    for cid in comp.clients:
        header += [f"{cid} {comp.metrics[cid]} %", "Δ"]
    header += [f"{AVG} %", "Δ", FLAG]
    sections: list[Section] = []
    for row in comp.rows:
        if not sections or sections[-1].title != row.group:
            sections.append(Section(row.group))
        n_flag = len(row.below_reference)
        federated = row.group != REFERENCE and row.delta.get(AVG) is not None
        flag = f"{n_flag}/{len(comp.clients)}" if federated else ""
        cells = [Cell(row.label), Cell(",".join(map(str, row.seeds)))]
        sections[-1].rows.append([*cells, *_score_cells(comp, row), Cell(flag)])
    ref = comp.reference.label if comp.reference is not None else "no reference"
    own = {r.reference.label for r in comp.rows if r.reference is not None} - {ref}
    vs = f"{ref} (or the {comp.reference.method} row of the same variant)" if own else ref
    notes = [
        f"Scores in %, mean ± sample std over seeds; Δ in points vs {vs}; "
        "best mean per column in bold (Centralized excluded)."
    ]
    for row in comp.rows:
        if row.below_reference and row.reference is not None:
            worse = ", ".join(row.below_reference)
            notes.append(f"{FLAG}: {row.label} below {row.reference.label} on {worse}")
    return TableSpec(f"{comp.benchmark}: comparison", header, sections, notes, numeric_from=2)


def costs_spec(comp: Comparison) -> TableSpec:
    """Communication per round (both directions), total bytes, peak memory and wall time."""
    header = ["Method", "seeds", "rounds", "↑ / round", "↓ / round", "total ↑+↓", "peak RSS MB"]
    header += ["s / round", "wall s"]
    sections: list[Section] = []
    for row in comp.rows:
        if not sections or sections[-1].title != row.group:
            sections.append(Section(row.group))
        rounds = sorted({r.rounds for r in row.runs})
        round_s = row.cost("round_s")
        sections[-1].rows.append(
            [
                Cell(row.label),
                Cell(",".join(map(str, row.seeds))),
                Cell(",".join(map(str, rounds))),
                Cell(human_bytes(row.cost("up_per_round").mean)),
                Cell(human_bytes(row.cost("down_per_round").mean)),
                Cell(human_bytes(row.cost("total_bytes").mean)),
                Cell(stat_cell(row.cost("peak_rss_mb"), scale=1.0, digits=0)),
                Cell(stat_cell(round_s, scale=1.0, digits=2) if round_s.n else "—"),
                Cell(stat_cell(row.cost("wall_s"), scale=1.0, digits=1)),
            ]
        )
    notes = [
        "Bytes are what travels (all sampled clients); memory and time as measured, ± std; "
        "s / round: mean training+aggregation time of a round; wall s: the whole run, "
        "including building caches and evaluation."
    ]
    shared = [r.display for row in comp.rows for r in row.runs if _process_wide_rss(r.raw)]
    if shared:
        notes.append(
            "peak RSS is process-wide (no per-run reset) for "
            f"{', '.join(sorted(set(shared)))}: in a multirun it includes earlier jobs."
        )
    return TableSpec(f"{comp.benchmark}: costs", header, sections, notes, numeric_from=2)


def _process_wide_rss(results: dict) -> bool:
    # Runs written before train.py reset the high-water mark carry no scope: process-wide.
    return results.get("peak_rss_scope", "process") != "run"
