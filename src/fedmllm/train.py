"""The training entry point: ``python -m fedmllm.train experiment=fedmed_fedavg`` (Hydra).

``run(cfg)`` builds the run (:mod:`fedmllm.build`), trains the federation (after the
``compare_with`` baselines, if any), and writes ``results.json``; :func:`main` is the Hydra
app over the packaged configs (``fedmllm.configs``), which the repository's ``train.py``
also runs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console

from fedmllm.build import build_components, make_simulator
from fedmllm.cli_errors import hydra_errors
from fedmllm.compare_with import baseline_configs, find_finished_run
from fedmllm.config_check import ConfigError, validate_config
from fedmllm.configs import PRIMARY, SEARCH_PATH, VERSION_BASE
from fedmllm.federation.analysis import path_similarity
from fedmllm.federation.checkpoint import CHECKPOINT_NAME
from fedmllm.privacy.summary import privacy_summary
from fedmllm.report import results_table
from fedmllm.report.side_by_side import side_by_side_table
from fedmllm.resume import check_resume
from fedmllm.run_dirs import FALSE, register_resolvers, resume_dir, runs_dir
from fedmllm.run_files import (
    RESULTS_FILE,
    build_results,
    save_run_config,
    validation_results,
)
from fedmllm.utils.io import write_json
from fedmllm.utils.memory import reset_peak_rss
from fedmllm.utils.tensorboard import flush, log_histograms

log = logging.getLogger(__name__)
KNOWN_ERRORS = (InstantiationException, ValueError, KeyError, FileNotFoundError)
"""Errors of a bad setting or missing file: reported in one line, not a stack."""
register_resolvers()  # hydra/default.yaml names the run and job folders through them


def run_baselines(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Run (or reuse finished runs of) the baselines in ``cfg.compare_with``; label -> results."""
    out = {}
    for label, base in baseline_configs(cfg).items():
        done = find_finished_run(cfg.paths.log_dir, base)
        if done is not None:
            log.info("compare_with.%s: reusing the finished run %s", label, done.parent)
            results = json.loads(done.read_text())
        else:
            log.info("compare_with.%s: training it first in %s", label, base.paths.output_dir)
            results = run(base)[1]["results"]
            done = Path(base.paths.output_dir) / RESULTS_FILE
        results["results_path"] = str(done)
        out[label] = results
    return out


def resume_target(cfg: DictConfig) -> dict[str, Any] | None:
    """What ``resume`` continues: None for a fresh run; else the unfinished run's folder
    becomes ``paths.output_dir`` and its checkpoint's config is checked (``fedmllm.resume``).

    Raises:
        FileNotFoundError: Nothing to resume.
        ConfigError: The config differs from the checkpoint's (without ``resume_force``), or
            ``resume`` in a multirun.
    """
    if cfg.get("resume") in FALSE:
        return None
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(f"resume={cfg.resume}: resumes a single run, not the jobs of a multirun")
    target = resume_dir(cfg.resume, runs_dir(cfg.paths.log_dir, cfg.task_name))
    assert target is not None
    cfg.paths.output_dir = str(target)  # continue in the run's own folder
    return check_resume(cfg, target)


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one federation as configured; returns ``(metrics, objects)``.

    With ``compare_with`` set, the named baselines run first (or finished runs with the same
    config are reused) and the final table shows all of them side by side. With ``resume``,
    the unfinished run continues in its own folder (:func:`resume_target`).
    """
    validate_config(cfg)
    resumed = resume_target(cfg)
    baselines = run_baselines(cfg) if cfg.get("compare_with") else {}
    t0 = time.perf_counter()
    # One process runs every job of a Hydra multirun: make peak_rss_mb this run's own peak.
    rss_scope = "run" if reset_peak_rss() else "process"
    run_dir = Path(cfg.paths.output_dir)
    save_run_config(cfg, run_dir)
    c = build_components(cfg)
    rounds = c.federation.rounds

    def report_round(rnd: int, logs: dict[str, float]) -> None:
        losses = {  # keys client_<id>/train/loss: show the client id itself
            k.split("/")[0].removeprefix("client_"): round(v, 4)
            for k, v in logs.items()
            if k.endswith("train/loss")
        }
        extra = (
            f" avg test {100 * logs['round/avg/test/main']:.2f}"
            if "round/avg/test/main" in logs
            else ""
        )
        log.info("round %d/%d  loss %s  %.1fs%s", rnd, rounds, losses, logs["round/wall_s"], extra)
        log_histograms(logger, logs, rnd)
        flush(logger)  # a run killed later keeps its curves up to its last checkpoint

    sim, logger = make_simulator(cfg, c, run_dir, report_round)
    if resumed is not None:
        sim.resume_from(run_dir / CHECKPOINT_NAME)
    out = sim.fit()
    out["wall_s"] = time.perf_counter() - t0
    validation = getattr(c.benchmark, "validation", None)
    results = build_results(
        cfg, sim.method, c.benchmark.name, out, c.eval_clients, validation, c.aggregator
    )
    results["peak_rss_scope"] = rss_scope
    # Validation is scored once, after training and after the test scores are final: searches
    # read `val_avg`, never the test scores (docs/reproduction.md).
    results.update(validation_results(sim.evaluate(split="val"), c.eval_clients))
    results["privacy"] = privacy_summary(c.federation.privacy, sim.history, c.federation.rounds)
    if c.retrieval is not None:
        results["retrieval"] = c.retrieval
    if resumed is not None:
        results["resumed_from"] = str(run_dir / CHECKPOINT_NAME)
        results["resume"] = resumed
    similarity = path_similarity(sim, c.engine.collator, c.eval_clients, cfg.get("analysis"))
    if similarity is not None:
        results["path_similarity"] = similarity
    if baselines:
        results["compared_with"] = {k: v["results_path"] for k, v in baselines.items()}
    write_json(run_dir / RESULTS_FILE, results)
    reference = json.loads(Path(cfg.compare_to).read_text()) if cfg.get("compare_to") else None
    if baselines:  # the first baseline (Standalone) is the reference of the Δ columns
        runs = {**baselines, results["method"]: results}
        Console().print(side_by_side_table(runs, reference=next(iter(baselines))))
    else:
        Console().print(results_table(results, reference))
    log.info("results written to %s", run_dir / RESULTS_FILE)
    if logger is not None:
        logger.finalize("success")
    metrics = {"avg_main": results["avg"], "val_avg": results.get("val_avg")}
    return metrics, {"simulator": sim, "results": results, "components": c}


def searched_metric(cfg: DictConfig, metrics: dict[str, float | None]) -> float | None:
    """The value a sweeper optimises: ``metrics[cfg.optimized_metric]`` (default ``val_avg``).

    Raises:
        ConfigError: An Optuna sweep on a metric the run does not have (a benchmark without
            a validation split has no ``val_avg``): naming the fix.
    """
    name = cfg.get("optimized_metric", "val_avg")
    value = metrics.get(name)
    sweeper = (
        str(HydraConfig.get().sweeper.get("_target_", "")) if HydraConfig.initialized() else ""
    )
    if value is None and "optuna" in sweeper.lower():
        raise ConfigError(
            f"optimized_metric={name}: this run has no such value (no validation split?); give "
            "the benchmark one (benchmark.val_size=50) or the reader a val split"
        )
    return value


@hydra.main(version_base=VERSION_BASE, config_path=SEARCH_PATH, config_name=PRIMARY)
def app(cfg: DictConfig) -> float | None:
    """Run one training job and return the metric a sweeper optimises."""
    try:
        metrics, _ = run(cfg)
    except KNOWN_ERRORS as e:
        # A bad argument in a config: show the cause, not the stack.
        kind = "configuration error" if isinstance(e, InstantiationException) else "error"
        log.error("%s: %s", kind, e)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records the failed job and goes on with the rest of the sweep
        sys.exit(2)
    return searched_metric(cfg, metrics)


def main() -> None:
    """``python train.py [overrides]``: the Hydra app, with command-line mistakes (an option
    that does not exist) answered in one line (``fedmllm.cli_errors``)."""
    with hydra_errors(KNOWN_ERRORS):
        app()


if __name__ == "__main__":
    main()
