"""A run's directory: the files it leaves for the others, and finding one to resume.

``train``, ``evaluate`` and the Flower ServerApp write the same files (the resolved config,
``results.json``), so ``eval.py`` can rebuild any run and the report can read any run,
whoever produced it. A run with a checkpoint but no ``results.json`` is unfinished
(``fedmllm.run_dirs`` finds one to resume).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedmllm.federation.config import Client
from fedmllm.metrics import MAIN_METRIC

RUN_CONFIG = "config.yaml"
"""The run's resolved config, beside its checkpoint: ``eval.py`` rebuilds the run from it."""
RESULTS_FILE = "results.json"
"""A finished run's results (:func:`build_results`)."""


def save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    """Create ``run_dir`` and write ``cfg`` resolved into it (no Hydra needed to read it back)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / RUN_CONFIG, resolve=True)


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved config a run was started with.

    Raises:
        FileNotFoundError: ``run_dir`` holds no run config.
    """
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {RUN_CONFIG})")
    return OmegaConf.load(path)


def run_label(method: Any, aggregator: Any = None) -> tuple[str, str]:
    """``(display name, report group)`` of a run: the method config's, else the rule's (a run
    of plain clients is named by its rule: FedAdam, FedA²-LoRA), else the name and ``Other``."""
    rule = (
        (None, None) if aggregator is None else (aggregator.display_name, aggregator.report_group)
    )
    display = method.display_name or rule[0] or method.name
    group = method.report_group or rule[1] or "Other"
    return str(display), str(group)


def build_results(
    cfg: DictConfig,
    method: Any,
    benchmark: str,
    out: dict[str, Any],
    clients: list[Client],
    validation: dict[str, Any] | None = None,
    aggregator: Any = None,
) -> dict[str, Any]:
    """The ``results.json`` payload of a finished run.

    ``validation`` holds the benchmark's record-validation counts (checked / skipped records);
    ``aggregator`` names a run of plain clients after its rule (:func:`run_label`).
    """
    per_client = {}
    for c in clients:
        metric = MAIN_METRIC[c.task]
        per_client[c.client_id] = {
            "task": c.task,
            "main_metric": metric,
            "scores": out["scores"][c.client_id],
            "baseline": out["baselines"][c.client_id],
        }
    mains = [v["scores"][v["main_metric"]] for v in per_client.values()]
    bases = [v["baseline"][v["main_metric"]] for v in per_client.values()]
    display, group = run_label(method, aggregator)
    return {
        "method": method.name,
        "display_name": display,
        "method_group": group,
        "benchmark": benchmark,
        "seed": cfg.seed,
        "rounds": cfg.federation.rounds,
        "clients": per_client,
        "avg": sum(mains) / len(mains),
        "baseline_avg": sum(bases) / len(bases),
        "comm": out["comm"],
        "wall_s": out["wall_s"],
        "peak_rss_mb": out["peak_rss_mb"],
        "aggregator": out["aggregator"],
        "history": out["history"],
        "validation": validation or {},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def validation_results(
    scores: dict[str, dict[str, float]], clients: Sequence[Any]
) -> dict[str, Any]:
    """The ``val`` block of ``results.json`` and ``val_avg``, the mean main metric on the
    clients' validation splits (what searches optimise); empty when no client has one.

    Args:
        scores: Client id -> scores on its validation split (``Simulator.evaluate(split="val")``).
        clients: The evaluation clients (their tasks name the main metric).
    """
    tasks = {c.client_id: c.task for c in clients}
    val = {
        cid: {"task": tasks[cid], "main_metric": MAIN_METRIC[tasks[cid]], "scores": s}
        for cid, s in scores.items()
    }
    if not val:
        return {}
    mains = [v["scores"][v["main_metric"]] for v in val.values()]
    return {"val": val, "val_avg": sum(mains) / len(mains)}
