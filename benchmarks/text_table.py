"""The text-only table (docs/modality.md, "Text-only federations"): LoRA / rsLoRA / VeRA ×
FedAvg / FedA² on text_cls_synth, run in one process, one JSON line per run.

    python benchmarks/text_table.py --seeds 0 1 2 --out text_table.jsonl  # needs: ~20 min of CPU

The learning rate of each adapter kind is chosen first, on a validation draw (seed 100: other
samples from the same generator, never a reported seed), by the FedAvg variant's accuracy among
``CANDIDATES``; both rules of that kind then use it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from fedmllm.configs import CONFIG_DIR
from fedmllm.train import run

CANDIDATES = {"lora": [3e-3, 1e-2], "rslora": [1e-3, 3e-3], "vera": [1e-2, 3e-2]}
VALIDATION_SEED = 100
EXPERIMENTS = [f"text_{k}_{r}" for k in ("lora", "rslora", "vera") for r in ("fedavg", "feda2")]
# The short config every run of the table uses (stated in docs/modality.md).
SHORT = [
    "threads=1",
    "federation.rounds=10",
    "federation.local_steps=30",
    "federation.batch_size=16",
    "federation.eval_every=100",
    "benchmark.public_size=2000",
    "model.pretrain.steps=400",
]


def one(experiment: str, seed: int, lr: float, extra: list[str], root: Path) -> dict:
    """Run one experiment; its average accuracy and wall time."""
    overrides = [f"experiment={experiment}", f"seed={seed}", f"federation.lr={lr}", *SHORT, *extra]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.data_dir = str(root / "data")
        cfg.paths.log_dir = str(root / "logs")
        cfg.paths.output_dir = str(root / "runs" / f"{experiment}_s{seed}_lr{lr}")
        cfg.logger = None
    start = time.perf_counter()
    metrics, objects = run(cfg)
    clients = objects["results"]["clients"]
    return {
        "experiment": experiment,
        "seed": seed,
        "lr": lr,
        "acc": metrics["avg_main"],
        "clients": {c: v["scores"]["em"] for c, v in clients.items()},
        "up_bytes": objects["results"]["comm"]["up_bytes"],
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    """Parse the arguments and run."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--experiments", nargs="+", default=EXPERIMENTS)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--root", type=Path, default=None)
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="text_table_"))

    def emit(row: dict) -> None:
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(line + "\n")

    chosen = {}
    for kind, lrs in CANDIDATES.items():
        scores = {}
        for lr in lrs:
            row = one(f"text_{kind}_fedavg", VALIDATION_SEED, lr, [], root)
            emit({**row, "role": "validation"})
            scores[lr] = row["acc"]
        chosen[kind] = max(scores, key=scores.get)
    emit({"role": "chosen_lr", **chosen})
    for seed in args.seeds:
        for e in args.experiments:
            emit({**one(e, seed, chosen[e.split("_")[1]], [], root), "role": "test"})


if __name__ == "__main__":
    main()
