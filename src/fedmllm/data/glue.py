"""A GLUE task as a federation: one task's ``train.tsv`` split IID over ``num_clients`` clients,
its dev file as every client's test pool (UniFLoW Table 4: 3 clients per task)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedmllm.data.benchmark import Benchmark
from fedmllm.data.readers.glue import GLUE_LABELS
from fedmllm.data.real import load_real_benchmark

TASK_DIRS = {"sst2": "SST-2", "rte": "RTE", "mnli": "MNLI"}
DEV = {"sst2": "dev", "rte": "dev", "mnli": "dev_matched"}


def load_glue(
    data_dir: str | Path,
    task: str = "sst2",
    labels: list[str] | None = None,
    root: str | None = None,
    num_clients: int = 3,
    train_size: int | None = None,
    test_size: int | None = 200,
    seed: int = 0,
    test_split: str | None = None,
) -> Benchmark:
    """GLUE task ``task`` from ``<data_dir>/<root>`` (default ``glue_data/SST-2`` etc.).

    Args:
        data_dir: Data root.
        task: ``sst2``, ``rte`` or ``mnli``.
        labels: The config's label names (``model.labels`` reads them); must be the task's.
        root: Folder of the TSV files relative to ``data_dir`` (default ``glue_data/<TASK>``).
        num_clients: Clients the training records are split over, IID.
        train_size: Training records drawn before the split (None: all).
        test_size: Dev records each client is scored on (None: all); the same draw for all.
        seed: Seed of the draws and of the split.
        test_split: Dev file stem (default ``dev``; MNLI ``dev_matched``).

    Raises:
        ValueError: An unknown task or labels that are not the task's.
    """
    if task not in TASK_DIRS:
        raise ValueError(f"benchmark.task must be one of {sorted(TASK_DIRS)}, got {task!r}")
    if labels is not None and list(labels) != GLUE_LABELS[task]:
        raise ValueError(f"benchmark.labels {list(labels)} are not {task}'s {GLUE_LABELS[task]}")
    source: dict[str, Any] = {
        "reader": "glue",
        "root": root or f"glue_data/{TASK_DIRS[task]}",
        "train": "train",
        "test": test_split or DEV[task],
        "options": {"task": task},
    }
    return load_real_benchmark(
        name=f"glue_{task}",
        data_dir=data_dir,
        clients={task: {"task": "classification", "modality": "text", "sources": [source]}},
        train_sizes={task: -1 if train_size is None else int(train_size)},
        test_size=test_size,
        seed=seed,
        partition={
            "scheme": "iid",
            "num_clients": int(num_clients),
            "seed": int(seed),
            "min_train": 1,
        },
    )
