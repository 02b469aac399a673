"""Figures of a comparison (matplotlib, Agg): per-client bars, drift, loss, comm vs accuracy.

Every function returns a ``Figure`` so that tests (and the notebook) can inspect its axes;
:func:`save_figures` writes them as PNGs.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fedmllm.report.compare import Comparison, Row  # noqa: E402
from fedmllm.report.curves import (  # noqa: E402
    DRIFT_LABELS,
    DRIFT_QUANTITIES,
    drift_series,
    mean_series,
    train_loss,
)


def _bar_rows(comp: Comparison) -> list[Row]:
    return [r for r in comp.rows if r is not comp.reference]


def colors(comp: Comparison) -> dict[str, str]:
    """One colour per row, the same in every figure of the comparison."""
    return {row.label: f"C{i % 10}" for i, row in enumerate(comp.rows)}


ROUND_TICKS = 12
"""Up to this many rounds every round gets its tick; beyond, integer ticks matplotlib picks."""


def _round_axis(ax: Axes) -> None:
    """Integer round ticks whatever the number of rounds (one round: one tick, "1")."""
    ax.set_xlabel("communication round")
    rounds = sorted({int(x) for line in ax.lines for x in line.get_xdata()})
    if rounds:
        ax.set_xlim(rounds[0] - 0.5, rounds[-1] + 0.5)
    if 0 < len(rounds) <= ROUND_TICKS:
        ax.set_xticks(rounds, labels=[str(r) for r in rounds])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def client_bars(comp: Comparison) -> Figure:
    """One bar per (client, method) with seed std as error bar; Standalone as dashed lines."""
    rows = _bar_rows(comp)
    cols = comp.columns
    color = colors(comp)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(cols) * max(len(rows), 1)), 4.8))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        xs = [c + (i - (len(rows) - 1) / 2) * width for c in range(len(cols))]
        means = [100 * row.scores[c].mean if c in row.scores else math.nan for c in cols]
        errs = [100 * (row.scores[c].std or 0.0) if c in row.scores else 0.0 for c in cols]
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=row.label, color=color[row.label])
    ref = comp.reference
    if ref is not None:
        at = [c for c, col in enumerate(cols) if col in ref.scores]
        ys = [100 * ref.scores[cols[c]].mean for c in at]
        lines = ax.hlines(ys, [c - 0.45 for c in at], [c + 0.45 for c in at], colors="black")
        lines.set(linestyles="--", linewidth=1.2, gid="reference")
        ax.plot([], [], "k--", label=f"{ref.label} (reference)")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([f"{c}\n({comp.metrics[c]})" if c in comp.metrics else c for c in cols])
    ax.set_xlabel("client (main metric)")
    ax.set_ylabel("score (%)")
    ax.set_title(f"{comp.benchmark}: per-client scores")
    # Below the axes: inside, it would cover the reference lines of the tallest clients.
    ax.legend(fontsize="small", ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    return fig


def drift_curves(comp: Comparison) -> Figure:
    """Drift quantities vs round, one line per method (mean over seeds), Fig. 1b/1c style."""
    fig, axes = plt.subplots(1, len(DRIFT_QUANTITIES), figsize=(4.2 * len(DRIFT_QUANTITIES), 3.6))
    color = colors(comp)
    for ax, name in zip(axes, DRIFT_QUANTITIES, strict=True):
        for row in comp.rows:
            rounds, values = mean_series([drift_series(r, name) for r in row.runs])
            if rounds:
                ax.plot(rounds, values, marker="o", ms=3, label=row.label, color=color[row.label])
        _round_axis(ax)
        ax.set_ylabel(DRIFT_LABELS[name])
        ax.set_title(name)
        if ax.lines:
            ax.legend(fontsize="x-small")
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"{comp.benchmark}: client drift")
    fig.tight_layout()
    return fig


def loss_curves(comp: Comparison) -> Figure:
    """Training loss vs round, one panel per training client, one line per method (Fig. 4)."""
    per_row = {row.label: [train_loss(r) for r in row.runs] for row in comp.rows}
    color = colors(comp)
    seen = {cid for runs in per_row.values() for tl in runs for cid in tl}
    # The table's client order first; training-only clients (Centralized's "pooled") after.
    clients = [c for c in comp.clients if c in seen] + sorted(seen - set(comp.clients))
    n = max(len(clients), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.4), squeeze=False)
    for ax, cid in zip(axes[0], clients, strict=False):
        for label, runs in per_row.items():
            rounds, values = mean_series([tl.get(cid, {}) for tl in runs])
            if rounds:
                ax.plot(rounds, values, marker="o", ms=3, label=label, color=color[label])
        _round_axis(ax)
        ax.set_ylabel("training loss")
        ax.set_title(f"client {cid}")
        ax.legend(fontsize="x-small")
    fig.suptitle(f"{comp.benchmark}: training loss per client")
    fig.tight_layout()
    return fig


def comm_vs_accuracy(comp: Comparison) -> Figure:
    """Total bytes on the wire (MiB; symlog beyond 10 MiB) vs Avg score, one point per method.

    Labels stay inside the axes: a point in the right half is labelled on its left.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    color = colors(comp)
    points = [(row, row.cost("total_bytes").mean / 2**20) for row in comp.rows]
    widest = max((mib for _, mib in points), default=0.0)
    if widest > 10:
        ax.set_xscale("symlog", linthresh=1.0)  # Standalone sends 0 bytes
    for row, mib in points:
        avg = row.scores["Avg"]
        ax.errorbar(
            mib,
            100 * avg.mean,
            yerr=100 * (avg.std or 0.0),
            fmt="o",
            capsize=3,
            color=color[row.label],
        )
        right = widest > 0 and _position(mib, widest) > 0.5
        ax.annotate(
            row.label,
            (mib, 100 * avg.mean),
            textcoords="offset points",
            xytext=(-5 if right else 5, 4),
            ha="right" if right else "left",
        )
    ax.margins(x=0.15, y=0.15)
    ax.set_xlabel("communication, total ↑+↓ (MiB)")
    ax.set_ylabel("Avg score (%)")
    ax.set_title(f"{comp.benchmark}: communication vs accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _position(mib: float, widest: float) -> float:
    """Where ``mib`` lies between 0 and ``widest`` on the axis (log-like beyond 10 MiB)."""
    if widest > 10:
        return math.log1p(mib) / math.log1p(widest)
    return mib / widest


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (for ``IPython.display.Image`` in a notebook), then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


PLOTS = {
    "bars": client_bars,
    "drift": drift_curves,
    "loss": loss_curves,
    "comm_vs_acc": comm_vs_accuracy,
}


def save_figures(comparisons: list[Comparison], out_dir: str | Path) -> list[Path]:
    """Write ``<plot>_<benchmark>.png`` for every plot and benchmark; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for comp in comparisons:
        for name, make in PLOTS.items():
            fig = make(comp)
            path = out / f"{name}_{comp.benchmark}.png"
            tmp = path.with_name(path.stem + ".tmp.png")
            fig.savefig(tmp, dpi=120)
            tmp.replace(path)
            plt.close(fig)
            written.append(path)
    return written
