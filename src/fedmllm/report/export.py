"""Exports of a comparison: Markdown, CSV (full-precision numbers) and LaTeX (booktabs).

Markdown and LaTeX render the same :class:`~fedmllm.report.cells.TableSpec` the console
shows; CSV carries the raw numbers (percent, unrounded) so that other tools can recompute.
Files are written atomically (temp file, then rename).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fedmllm.report.cells import FLAG, TableSpec, comparison_spec, costs_spec
from fedmllm.report.compare import AVG, Comparison
from fedmllm.utils.io import write_atomic

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_SYMBOLS = {"±": "$\\pm$", "↑": "$\\uparrow$", "↓": "$\\downarrow$", "Δ": "$\\Delta$"}
_LATEX_SYMBOLS.update({"—": "--", "²": "$^2$", "<": "\\textless{}", ">": "\\textgreater{}"})


def to_markdown(spec: TableSpec) -> str:
    """A GitHub Markdown table with group rows in italics and notes below."""
    width = len(spec.header)
    lines = [f"### {spec.title}", "", "| " + " | ".join(spec.header) + " |"]
    align = ["---"] * spec.numeric_from + ["---:"] * (width - spec.numeric_from)
    lines.append("| " + " | ".join(align) + " |")
    for section in spec.sections:
        lines.append("| " + " | ".join([f"*{section.title}*"] + [""] * (width - 1)) + " |")
        for row in section.rows:
            cells = [f"**{c.text}**" if c.bold else c.text for c in row]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in spec.notes]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the table's Unicode symbols to math."""
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)
    for sym, tex in sorted(_LATEX_SYMBOLS.items(), key=lambda kv: -len(kv[0])):
        out = out.replace(sym, tex)
    return out


def to_latex(spec: TableSpec) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``) with group rows in italics."""
    width = len(spec.header)
    cols = "l" * spec.numeric_from + "r" * (width - spec.numeric_from)
    lines = [
        f"% {latex_escape(spec.title)}",
        f"\\begin{{tabular}}{{{cols}}}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in spec.header) + " \\\\",
    ]
    for section in spec.sections:
        lines.append("\\midrule")
        lines.append(
            f"\\multicolumn{{{width}}}{{l}}{{\\textit{{{latex_escape(section.title)}}}}} \\\\"
        )
        for row in section.rows:
            cells = [
                f"\\textbf{{{latex_escape(c.text)}}}" if c.bold else latex_escape(c.text)
                for c in row
            ]
            lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {latex_escape(n)}" for n in spec.notes]
    return "\n".join(lines) + "\n"


def comparison_csv(comp: Comparison) -> str:
    """One line per row: ids, seeds, then per column mean / std / Δ in percent (unrounded)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["benchmark", "group", "method", "label", "n_seeds", "seeds"]
    for col in comp.columns:
        header += [f"{col}_mean", f"{col}_std", f"{col}_delta"]
    w.writerow([*header, "below_reference"])
    for row in comp.rows:
        line: list[object] = [comp.benchmark, row.group, row.method, row.label, len(row.runs)]
        line.append(" ".join(map(str, row.seeds)))
        for col in comp.columns:
            s, d = row.scores.get(col), row.delta.get(col)
            line += [
                "" if s is None else repr(100 * s.mean),
                "" if s is None or s.std is None else repr(100 * s.std),
                "" if d is None else repr(100 * d),
            ]
        w.writerow([*line, " ".join(row.below_reference)])
    return buf.getvalue()


def costs_csv(comp: Comparison) -> str:
    """One line per row: mean costs over seeds (bytes, MB, seconds), unrounded."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    fields = ("up_per_round", "down_per_round", "total_bytes", "peak_rss_mb", "round_s", "wall_s")
    w.writerow(["benchmark", "group", "method", "label", "n_seeds", *fields, "wall_s_std"])
    for row in comp.rows:
        values = [repr(row.cost(f).mean) if row.cost(f).n else "" for f in fields]
        std = row.cost("wall_s").std
        w.writerow(
            [comp.benchmark, row.group, row.method, row.label, len(row.runs), *values]
            + ["" if std is None else repr(std)]
        )
    return buf.getvalue()


def write_exports(comparisons: list[Comparison], out_dir: str | Path) -> list[Path]:
    """``table_<benchmark>.{md,csv,tex}`` and ``costs_<benchmark>.{md,csv,tex}`` in ``out_dir``."""
    out = Path(out_dir)
    written = []
    for comp in comparisons:
        for name, spec, csv_text in (
            ("table", comparison_spec(comp), comparison_csv(comp)),
            ("costs", costs_spec(comp), costs_csv(comp)),
        ):
            stem = f"{name}_{comp.benchmark}"
            for suffix, text in (
                (".md", to_markdown(spec)),
                (".csv", csv_text),
                (".tex", to_latex(spec)),
            ):
                write_atomic(out / f"{stem}{suffix}", text)
                written.append(out / f"{stem}{suffix}")
    return written


__all__ = ["AVG", "FLAG", "to_markdown", "to_latex", "comparison_csv", "costs_csv", "write_exports"]
