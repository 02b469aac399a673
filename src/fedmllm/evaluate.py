"""Composition root of ``eval.py``: score a finished or interrupted run without training.

The run's own resolved config (``config.yaml`` in the run directory) rebuilds the same
benchmark, engine and method; the checkpoint supplies the global and private adapter tensors.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from fedmllm.federation.checkpoint import CHECKPOINT_NAME
from fedmllm.report import results_table
from fedmllm.train import RUN_CONFIG, build_components, build_results, make_simulator

log = logging.getLogger(__name__)


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved config a run was started with."""
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {RUN_CONFIG})")
    return OmegaConf.load(path)


def evaluate_run(ckpt_path: str | Path, overrides: DictConfig | None = None) -> dict[str, Any]:
    """Evaluate every client's personalised model of a run on its own test split.

    Args:
        ckpt_path: A run directory or its ``last.ckpt``.
        overrides: Config entries replacing the run's own (e.g. ``federation.eval_batch_size``).

    Returns:
        The results dict, also written to ``<run dir>/eval_results.json``.
    """
    t0 = time.perf_counter()
    path = Path(ckpt_path).expanduser()
    run_dir = path if path.is_dir() else path.parent
    ckpt = run_dir / CHECKPOINT_NAME if path.is_dir() else path
    cfg = load_run_config(run_dir)
    if overrides is not None:
        cfg = OmegaConf.merge(cfg, overrides)
    cfg.logger = None
    c = build_components(cfg)
    sim, _ = make_simulator(cfg, c, run_dir)
    sim.resume_from(ckpt)
    scores = sim.evaluate(write_dir=run_dir / "eval_predictions")
    out = {
        "scores": scores,
        "baselines": sim.baselines,
        "comm": sim.comm,
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": 0.0,
        "history": sim.history,
        "aggregator": c.aggregator.describe(),
    }
    results = build_results(cfg, sim.method, c.benchmark.name, out, c.eval_clients)
    results["evaluated_round"] = sim.round
    (run_dir / "eval_results.json").write_text(json.dumps(results, indent=2))
    Console().print(results_table(results))
    return results
