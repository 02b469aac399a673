"""Evaluate one personalised model on one client's test split."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fedmllm.metrics import compute_scalars, task_metrics


def score_predictions(task: str, preds: Sequence[str], samples: Sequence[Any]) -> dict[str, float]:
    """Plain-float scores of ``preds`` against the samples' answers with the task's metrics."""
    metrics = task_metrics(task)
    metrics.update(list(preds), [s.answer for s in samples])
    return compute_scalars(metrics)


@torch.no_grad()
def generate_all(
    method: Any, gen_collator: Any, samples: Sequence[Any], batch_size: int, max_new_tokens: int
) -> list[str]:
    """Greedy predictions for ``samples`` in batches (left-padded by the collator)."""
    preds: list[str] = []
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start : start + batch_size])
        preds.extend(method.predict(gen_collator(chunk), max_new_tokens))
    return preds


def write_predictions(path: Path, samples: Sequence[Any], preds: Sequence[str]) -> None:
    """One JSON line per sample, so a user can read the model's mistakes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for s, p in zip(samples, preds, strict=True):
            f.write(
                json.dumps({"question": s.question, "answer": s.answer, "prediction": p}) + "\n"
            )
