"""``python -m fedmllm.report <run or multirun dirs...> [--plot] [--out DIR]``.

Collects every ``results.json`` under the given paths, prints the comparison and costs tables
per benchmark, writes Markdown/CSV/LaTeX exports and, with ``--plot``, PNG figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from fedmllm.report.cells import comparison_spec, costs_spec
from fedmllm.report.collect import collect
from fedmllm.report.compare import compare
from fedmllm.report.console import rich_table
from fedmllm.report.export import write_exports


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fedmllm.report",
        description="Compare fedmllm runs: methods × clients, mean ± std over seeds, Δ vs "
        "Standalone, costs; exports Markdown, CSV, LaTeX and (--plot) PNGs.",
    )
    p.add_argument("paths", nargs="+", help="run dirs, multirun dirs or results.json files")
    p.add_argument("--out", help="where exports and plots go (default: <first path>/report)")
    p.add_argument("--plot", action="store_true", help="also write PNG figures")
    p.add_argument("--reference", default="standalone", help="method of the Δ reference row")
    p.add_argument("--no-export", action="store_true", help="print the tables only")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the report; returns the process exit code (2 on bad input)."""
    args = _parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped to a file: do not squeeze the table into 80 columns
        console = Console(width=200)
    try:
        runs = collect(args.paths)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    comparisons = compare(runs, reference=args.reference)
    console.print(f"{len(runs)} runs from {', '.join(args.paths)}")
    for comp in comparisons:
        if comp.reference is None:
            console.print(f"[yellow]no {args.reference!r} run for {comp.benchmark}: no Δ[/]")
        console.print(rich_table(comparison_spec(comp)))
        console.print(rich_table(costs_spec(comp)))
    if args.no_export and not args.plot:
        return 0
    first = Path(args.paths[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else first.parent) / "report"
    written = [] if args.no_export else write_exports(comparisons, out)
    if args.plot:
        from fedmllm.report.plots import save_figures  # matplotlib only when asked for

        written += save_figures(comparisons, out)
    for path in written:
        console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
