"""FedMRG's measurement table: finished mrg_* runs -> clinical F1, BLEU-4, ROUGE-L, BERTScore,
bytes per round, mean ± std over seeds (docs/methods.md, "FedMRG").

BERTScore is computed here from each run's ``predictions/*.jsonl`` with a word-level BERT built
from a config with random weights (seed 0; no pretrained encoder can be downloaded here): an
overlap score of contextual embeddings, not a semantic one. With a real encoder use
``federation.metrics.report=[bleu,rouge,clinical,bertscore]`` and
``federation.metric_options.bertscore.model=<dir>`` instead.

    python benchmarks/mrg_table.py <logs dir holding <task>_s<seed>/runs/*/results.json>
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ORDER = (
    "mrg_centralized",
    "mrg_standalone",
    "mrg_fedavg",
    "mrg_fedsa",
    "mrg_feddpa",
    "mrg_fedmrg",
    "mrg_fedmrg_no_lowrank",
    "mrg_fedmrg_no_contrast",
    "mrg_fedmrg_no_prompt",
    "mrg_fedmrg_no_dual",
    "mrg_fedmrg_no_mutual",
)
KEYS = ("ce_f1", "ce_kind_f1", "bleu4", "rougeL")


def tiny_bert(path: Path, words: list[str]) -> Path:
    """A random word-level BERT (4 layers, width 64, seed 0) saved at ``path``."""
    import torch
    import transformers

    if (path / "config.json").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizer(str(path / "vocab.txt"))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    transformers.BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def bertscore_f(run: Path, encoder: Path) -> float:
    """Mean BERTScore F over every client's predictions of one run."""
    from fedmllm.metrics.bertscore import BERTScore

    metric = BERTScore(model=str(encoder), num_layers=4)
    for file in sorted((run / "predictions").glob("*.jsonl")):
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        metric.update([r["prediction"] for r in rows], [r["answer"] for r in rows])
    return float(metric.compute()["bertscore_f"])


def run_row(run: Path, encoder: Path) -> dict[str, float]:
    """Client-averaged scores, bytes per round (up + down) and wall time of one run."""
    res = json.loads((run / "results.json").read_text())
    clients = res["clients"].values()
    row = {k: statistics.mean(c["scores"][k] for c in clients) for k in KEYS}
    row["bertscore_f"] = bertscore_f(run, encoder)
    comm = res["comm"]
    row["kb_round"] = (comm["up_bytes"] + comm["down_bytes"]) / res["rounds"] / 1024
    row["wall_s"] = res["wall_s"]
    return row


def fmt(values: list[float], scale: float = 100.0) -> str:
    m = statistics.mean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path)
    parser.add_argument("--encoder", type=Path, default=Path("measure/tiny_bert"))
    args = parser.parse_args(argv)
    from fedmllm.data.synthmed.mrg import MRGBenchmark

    encoder = tiny_bert(args.encoder, MRGBenchmark("x", [], []).vocabulary())
    head = ("method", "seeds", "clinical F1", "kind F1", "BLEU-4", "ROUGE-L", "BERTScore F*")
    print("| " + " | ".join((*head, "KiB/round", "wall s")) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for exp in ORDER:
        runs = sorted(args.logs.glob(f"{exp}_s*/runs/*/results.json"))
        runs = [r.parent for r in runs if r.parent.parent.parent.name.rsplit("_s", 1)[0] == exp]
        if not runs:
            continue
        rows = [run_row(r, encoder) for r in runs]
        cells = [fmt([r[k] for r in rows]) for k in (*KEYS, "bertscore_f")]
        kb = statistics.mean(r["kb_round"] for r in rows)
        wall = statistics.mean(r["wall_s"] for r in rows)
        print(f"| {exp} | {len(rows)} | " + " | ".join(cells) + f" | {kb:.1f} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
