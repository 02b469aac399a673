"""``python -m fedmllm.report.select <multirun dirs...>``: pick each method's setting on validation.

The runs of a sweep are grouped by benchmark and method, and within those by variant (the
config values that differ, as the comparison report labels them); every variant's mean
``val_avg`` over its seeds is computed and the best is chosen. Its test score (``avg``) is
printed beside it, read once, after the choice: the choice never looks at it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from fedmllm.report.collect import Run, collect


@dataclass
class Choice:
    """One variant of one method on one benchmark.

    Attributes:
        benchmark: Benchmark name.
        method: Display name of the method.
        variant: The overrides that distinguish it ("" when the method has one variant).
        seeds: Seeds it ran with.
        val: Mean ``val_avg`` over those seeds.
        test: Mean test ``avg`` over those seeds.
        chosen: Best ``val`` of its method (ties: the first in sorted order).
    """

    benchmark: str
    method: str
    variant: str
    seeds: list[int]
    val: float
    test: float
    chosen: bool = False


def choose(runs: Sequence[Run], metric: str = "val_avg") -> list[Choice]:
    """Every variant with its mean validation score, the best of each method marked.

    Raises:
        ValueError: A run has no ``metric`` (no validation split), naming the file.
    """
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        if run.raw.get(metric) is None:
            raise ValueError(
                f"{run.path}: no {metric!r} (the benchmark had no validation split): rerun "
                "with benchmark.val_size > 0; a choice on test scores is not offered"
            )
        name = str(run.raw.get("display_name") or run.method)
        groups.setdefault((run.benchmark, name, run.variant), []).append(run)
    out = []
    for (bench, name, variant), members in sorted(groups.items()):
        out.append(
            Choice(
                bench,
                name,
                variant,
                sorted(r.seed for r in members),
                sum(float(r.raw[metric]) for r in members) / len(members),
                sum(r.avg for r in members) / len(members),
            )
        )
    best: dict[tuple[str, str], Choice] = {}
    for c in out:
        key = (c.benchmark, c.method)
        if key not in best or c.val > best[key].val:
            best[key] = c
    for c in best.values():
        c.chosen = True
    return out


def format_choices(choices: Sequence[Choice]) -> str:
    """One line per variant (values in %), ``*`` on the chosen one."""
    lines = []
    for c in choices:
        mark = "*" if c.chosen else " "
        seeds = ",".join(map(str, c.seeds))
        lines.append(
            f"{mark} {c.benchmark} | {c.method} | {c.variant or '-'} | seeds {seeds} | "
            f"val {100 * c.val:.2f} | test {100 * c.test:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the variants and the choice (exit 2 on bad input or a run without validation)."""
    p = argparse.ArgumentParser(
        prog="python -m fedmllm.report.select",
        description="Choose each method's hyper-parameters by mean validation score over "
        "seeds; the test score of every variant is shown, never used.",
    )
    p.add_argument("paths", nargs="+", help="run dirs, multirun dirs or results.json files")
    p.add_argument("--metric", default="val_avg", help="validation key of results.json")
    args = p.parse_args(argv)
    if args.metric in ("avg", "avg_main"):
        print("error: --metric must be a validation score, not the test avg", file=sys.stderr)
        return 2
    try:
        choices = choose(collect(args.paths), args.metric)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_choices(choices))
    return 0


if __name__ == "__main__":
    sys.exit(main())
