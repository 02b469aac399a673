"""The end-of-run table: clients × main metric, Avg, trivial baseline and Δ vs Standalone.

Works on plain data (a ``results.json`` dict), so it can render any finished run.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _delta(x: float, ref: float | None) -> str:
    if ref is None:
        return ""
    d = 100 * (x - ref)
    arrow = "↑" if d > 0 else ("↓" if d < 0 else "=")
    return f"{d:+.2f} {arrow}"


def results_table(results: dict[str, Any], reference: dict[str, Any] | None = None) -> Table:
    """A rich table of one run's per-client main metrics (in %).

    Args:
        results: A ``results.json`` dict (``clients`` → ``{task, main_metric, scores, baseline}``).
        reference: Another run's results (normally Standalone) for the Δ column.
    """
    title = (
        f"{results['method']} on {results['benchmark']} — "
        f"seed {results['seed']}, {results['rounds']} rounds"
    )
    table = Table(title=title)
    for col in ("client", "task", "metric", "score %", "trivial %"):
        table.add_column(col, justify="right" if "%" in col else "left")
    if reference is not None:
        table.add_column(f"Δ vs {reference['method']}", justify="right")
    privacy = results.get("privacy") or {}
    eps = privacy.get("epsilon_per_client") if privacy.get("mode", "none") != "none" else None
    if eps is not None:  # DP runs: each client's ε (docs/privacy.md)
        table.add_column(f"ε (δ={privacy['delta']:g})", justify="right")
    for cid, c in results["clients"].items():
        metric = c["main_metric"]
        ref = None
        if reference is not None and cid in reference["clients"]:
            ref = reference["clients"][cid]["scores"][metric]
        row = [cid, c["task"], metric, _pct(c["scores"][metric]), _pct(c["baseline"][metric])]
        if reference is not None:
            row.append(_delta(c["scores"][metric], ref))
        if eps is not None:
            row.append(f"{eps[cid]:.2f}" if cid in eps else "-")
        table.add_row(*row)
    row = ["Avg", "", "", _pct(results["avg"]), _pct(results["baseline_avg"])]
    if reference is not None:
        row.append(_delta(results["avg"], reference["avg"]))
    if eps is not None:
        row.append(f"{privacy['epsilon']:.2f}")
    table.add_row(*row, style="bold")
    table.caption = (
        f"comm ↑ {results['comm']['up_bytes'] / 2**20:.2f} MiB, "
        f"↓ {results['comm']['down_bytes'] / 2**20:.2f} MiB · "
        f"wall {results['wall_s']:.0f} s · peak RSS {results['peak_rss_mb']:.0f} MB"
    )
    return table
