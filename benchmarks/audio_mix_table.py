"""The mixed-modality table from finished runs: image / audio columns, per seed, mean ± std.

``python benchmarks/audio_mix_table.py <runs root> [<runs root> ...]`` reads every
``results.json`` under the roots (one run each) and its ``predictions/<client>.jsonl``, and
scores the test questions by the input that holds the answer: *image* = the image client's
questions and the ``both`` client's image questions, *audio* = the audio client's and the
``both`` client's sound questions (the six audio question wordings), *text* = the text
client. Columns: EM (the main metric) and token accuracy, in %. Runs are grouped by
``task_name`` and ``method.stage_schedule.mode``.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from fedmllm.data.synthaudio.clips import QUESTIONS

AUDIO_QUESTIONS = {text for text, _ in QUESTIONS.values()}
COLUMNS = ("image", "audio", "text")


def _asks(client: str, question: str) -> str:
    if client.startswith("audio"):
        return "audio"
    if client.startswith("text"):
        return "text"
    if client.startswith("both"):
        return "audio" if question in AUDIO_QUESTIONS else "image"
    return "image"


def run_scores(run: Path) -> tuple[str, int, dict[str, dict[str, float]], float]:
    """``(label, seed, {column: {em, token_acc}}, wall_s)`` of one run folder."""
    results = json.loads((run / "results.json").read_text())
    cfg = results["config"]
    schedule = (cfg.get("method", {}).get("stage_schedule") or {}).get("mode", "-")
    label = f"{cfg.get('task_name')} [{schedule}]"
    hits: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted((run / "predictions").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            col = _asks(path.stem, rec["question"])
            for key in ("em", "token_acc"):
                hits[col][key].append(float(rec["scores"][key]))
    scores = {c: {k: 100 * sum(v) / len(v) for k, v in d.items()} for c, d in hits.items()}
    return label, int(results["seed"]), scores, float(results["wall_s"])


def main(roots: list[str]) -> None:
    """Print one markdown row per (experiment, schedule), mean ± std over seeds."""
    table: dict[str, list[tuple[int, dict, float]]] = defaultdict(list)
    for root in roots:
        for res in sorted(Path(root).rglob("results.json")):
            if (res.parent / "predictions").is_dir():
                label, seed, scores, wall = run_scores(res.parent)
                table[label].append((seed, scores, wall))
    head = [f"{c} {k}" for c in COLUMNS for k in ("EM", "tok")]
    print("| run | seeds | " + " | ".join(head) + " | wall s |")
    print("|---" * (len(head) + 3) + "|")
    for label, rows in sorted(table.items()):
        cells = []
        for c in COLUMNS:
            for k in ("em", "token_acc"):
                vals = [s[c][k] for _, s, _ in rows if c in s]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.1f} ± {sd:.1f}" if vals else "-")
        seeds = ",".join(str(s) for s, _, _ in sorted(rows, key=lambda r: r[0]))
        wall = statistics.mean(w for _, _, w in rows)
        print(f"| {label} | {seeds} | " + " | ".join(cells) + f" | {wall:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["logs"])
