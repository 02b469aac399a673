"""The table of docs/robustness.md from the runs of ``benchmarks/robustness_sweep.sh``.

Reads every ``results.json`` under LOG_DIR, groups them by (rule, distance, attack) and prints,
per rule, the Avg score (mean ± sample std over the seeds found, with their count) clean and
under each attack, and the points lost. ``--honest`` leaves the attacking client (the first
one, attack.clients=1) out of every run's average, the clean runs' included.

    python benchmarks/robustness_table.py logs/robustness
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

ATTACKS = ("none", "sign_flip", "label_flip")
RULE_ORDER = ("fedavg", "median", "trimmed_mean", "krum", "multikrum", "norm_bounded", "bulyan")


def score(results: dict, honest: bool) -> float:
    """The run's Avg main metric in points, over all clients or without the first one (the
    attacker of attack.clients=1, left out of clean runs too so the columns compare)."""
    if not honest:
        return 100 * results["avg"]
    ids = list(results["clients"])[1:]
    mains = [results["clients"][c]["scores"][results["clients"][c]["main_metric"]] for c in ids]
    return 100 * sum(mains) / len(mains)


def collect(log_dir: Path, honest: bool) -> dict[tuple[str, str, str], dict[int, float]]:
    """(rule, distance, attack) -> seed -> score."""
    out: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for path in sorted(log_dir.rglob("results.json")):
        r = json.loads(path.read_text())
        agg = r["aggregator"]
        attack = (r["config"].get("attack") or {}).get("name", "none")
        dist = agg.get("distance", "-") if agg["aggregator"] != "fedavg" else "-"
        out[(agg["aggregator"], dist, attack)][int(r["seed"])] = score(r, honest)
    return out


def cell(scores: dict[int, float]) -> str:
    if not scores:
        return "—"
    vals = list(scores.values())
    sd = f" ± {statistics.stdev(vals):.1f}" if len(vals) > 1 else ""
    return f"{statistics.mean(vals):.1f}{sd} ({len(vals)})"


def lost(clean: dict[int, float], hit: dict[int, float]) -> str:
    """Points lost (clean − attacked; negative: gained), paired by seed (seeds in both)."""
    seeds = sorted(set(clean) & set(hit))
    if not seeds:
        return "—"
    return f"{statistics.mean(clean[s] - hit[s] for s in seeds):.1f}"


def table(runs: dict[tuple[str, str, str], dict[int, float]]) -> str:
    rows = sorted(
        {(rule, dist) for rule, dist, _ in runs},
        key=lambda rd: (RULE_ORDER.index(rd[0]) if rd[0] in RULE_ORDER else 99, rd[1]),
    )
    head = "| rule | distance | clean | sign flip ×10 | lost | label flip | lost |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for rule, dist in rows:
        clean, sign, label = (runs.get((rule, dist, a), {}) for a in ATTACKS)
        lines.append(
            f"| {rule} | {dist} | {cell(clean)} | {cell(sign)} | {lost(clean, sign)} "
            f"| {cell(label)} | {lost(clean, label)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log_dir", type=Path)
    parser.add_argument("--honest", action="store_true", help="average the honest clients only")
    args = parser.parse_args()
    print(table(collect(args.log_dir, args.honest)))


if __name__ == "__main__":
    main()
