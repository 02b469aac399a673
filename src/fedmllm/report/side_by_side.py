"""Runs of several methods on one benchmark, side by side: per client, Δ vs a reference.

Works on plain ``results.json`` dicts. :func:`side_by_side_table` shows one seed (what
``train.py`` prints after a run with ``compare_with``); :func:`seed_summary` and
:func:`seed_summary_table` show mean ± std over seeds with Δ paired by seed.

    python -m fedmllm.report.side_by_side logs/**/results.json [--reference standalone]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedmllm.utils.io import write_json


def _main_score(results: dict[str, Any], client: str) -> float | None:
    c = results["clients"].get(client)
    return None if c is None else c["scores"][c["main_metric"]]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _delta(x: float | None, ref: float | None) -> str:
    if x is None or ref is None:
        return "—"
    d = 100 * (x - ref)
    return f"{d:+.2f} {'↑' if d > 0 else ('↓' if d < 0 else '=')}"


def _similarity_note(runs: dict[str, dict[str, Any]]) -> str:
    parts = []
    for label, r in runs.items():
        sim = r.get("path_similarity")
        if sim:
            paths = ", ".join(f"{p} {v:.3f}" for p, v in sim["paths"].items())
            parts.append(f"{label}: {paths}")
    if not parts:
        return ""
    return "\ncross-client cosine of adapter-path outputs (before aggregation): " + "; ".join(parts)


def side_by_side_table(
    runs: dict[str, dict[str, Any]], reference: str | None = "standalone"
) -> Table:
    """Per-client main metric (%) of each run, then Δ of every other run vs ``reference``.

    Args:
        runs: Label -> ``results.json`` dict, in column order; all on the same benchmark.
        reference: Label of the run the Δ columns subtract (None: no Δ columns).

    Raises:
        KeyError: ``reference`` is not among ``runs``.
    """
    if not runs:
        raise ValueError("side_by_side_table needs at least one run")
    if reference is not None and reference not in runs:
        raise KeyError(f"reference {reference!r} is not among the runs {list(runs)}")
    first = next(iter(runs.values()))
    title = f"{first['benchmark']} — seed {first['seed']}, {first['rounds']} rounds — main metric %"
    table = Table(title=title + (f", Δ vs {reference}" if reference is not None else ""))
    for col in ("client", "metric"):
        table.add_column(col, no_wrap=True)
    for label in runs:
        table.add_column(label, justify="right")
    others = [label for label in runs if reference is not None and label != reference]
    for label in others:
        table.add_column(f"Δ {label}", justify="right", no_wrap=True)
    for cid, c in first["clients"].items():
        scores = {label: _main_score(r, cid) for label, r in runs.items()}
        ref = scores.get(reference) if reference is not None else None
        table.add_row(
            cid,
            c["main_metric"],
            *(_pct(s) for s in scores.values()),
            *(_delta(scores[label], ref) for label in others),
        )
    avgs = {label: r["avg"] for label, r in runs.items()}
    ref_avg = avgs.get(reference) if reference is not None else None
    table.add_row(
        "Avg",
        "",
        *(_pct(a) for a in avgs.values()),
        *(_delta(avgs[label], ref_avg) for label in others),
        style="bold",
    )
    comm = " · ".join(f"{k} ↑ {r['comm']['up_bytes'] / 2**20:.2f} MiB" for k, r in runs.items())
    table.caption = comm + _similarity_note(runs)
    return table


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def seed_summary(
    groups: dict[str, list[dict[str, Any]]], reference: str | None = "standalone"
) -> dict[str, Any]:
    """Mean ± std over seeds of each method's per-client and Avg main metric.

    Δ vs ``reference`` is paired by seed (``score_m(seed) − score_ref(seed)``) over the seeds
    both methods have. Values are fractions (not %).

    Args:
        groups: Method label -> its runs (one per seed, each a ``results.json`` dict).
        reference: Label of the reference method (None: no Δ).

    Returns:
        ``{label: {"seeds": [...], "rows": {client|"Avg": {"mean", "std", "delta_mean",
        "delta_std", "wins"}}}}`` where ``wins`` counts seeds that beat the reference.
    """
    ref_runs = {r["seed"]: r for r in groups.get(reference, [])} if reference else {}
    out: dict[str, Any] = {}
    for label, runs in groups.items():
        clients = list(runs[0]["clients"]) + ["Avg"]
        rows = {}
        for cid in clients:

            def score(r: dict[str, Any], cid: str = cid) -> float | None:
                return r["avg"] if cid == "Avg" else _main_score(r, cid)

            vals = [score(r) for r in runs if score(r) is not None]
            mean, std = _mean_std(vals)
            row: dict[str, Any] = {"mean": mean, "std": std, "n": len(vals)}
            deltas = [
                score(r) - score(ref_runs[r["seed"]])
                for r in runs
                if r["seed"] in ref_runs and label != reference
            ]
            if deltas:
                row["delta_mean"], row["delta_std"] = _mean_std(deltas)
                row["wins"] = sum(d > 0 for d in deltas)
            rows[cid] = row
        out[label] = {"seeds": sorted(r["seed"] for r in runs), "rows": rows}
    return out


def seed_summary_table(summary: dict[str, Any], reference: str | None = "standalone") -> Table:
    """A rich table of :func:`seed_summary`: one row per (method, client), in %."""
    title = "mean ± std over seeds, main metric %"
    table = Table(title=title + (f"; Δ vs {reference} paired by seed" if reference else ""))
    for col in ("method", "client", "mean ± std", f"Δ vs {reference}", "seeds ↑", "seeds"):
        table.add_column(col, justify="right" if col[0] in "mΔs" and col != "method" else "left")
    for label, s in summary.items():
        for n, (cid, row) in enumerate(s["rows"].items()):
            delta, wins = "", ""
            if "delta_mean" in row:
                delta = f"{100 * row['delta_mean']:+.2f} ± {100 * row['delta_std']:.2f}"
                wins = f"{row['wins']}/{row['n']}"
            table.add_row(
                label if n == 0 else "",
                cid,
                f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f}",
                delta,
                wins,
                ",".join(map(str, s["seeds"])) if n == 0 else "",
                end_section=n == len(s["rows"]) - 1,
                style="bold" if cid == "Avg" else None,
            )
    return table


def main(argv: Sequence[str] | None = None) -> None:
    """Print the seed summary of ``results.json`` files grouped by their ``method``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="results.json files")
    ap.add_argument("--reference", default="standalone", help="method the Δ subtracts")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    args = ap.parse_args(argv)
    groups: dict[str, list[dict[str, Any]]] = {}
    for path in args.results:
        r = json.loads(path.read_text())
        groups.setdefault(r["method"], []).append(r)
    reference = args.reference if args.reference in groups else None
    summary = seed_summary(groups, reference)
    Console().print(seed_summary_table(summary, reference))
    if args.json:
        write_json(args.json, summary)


if __name__ == "__main__":
    main()
