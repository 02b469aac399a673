"""Composition root of a training run: the only place (with ``evaluate``) that instantiates.

``run(cfg)`` builds benchmark → engine → method → aggregator → simulator, runs the
federation, and writes ``results.json``; the top-level ``train.py`` wraps it in Hydra.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from fedmllm.federation import FederationConfig, Simulator
from fedmllm.federation.config import Client
from fedmllm.metrics import MAIN_METRIC
from fedmllm.report import results_table
from fedmllm.report.side_by_side import side_by_side_table
from fedmllm.utils.analysis import path_similarity
from fedmllm.utils.baselines import baseline_configs, find_finished_run
from fedmllm.utils.io import write_json
from fedmllm.utils.memory import reset_peak_rss
from fedmllm.utils.runs import resolve_resume
from fedmllm.utils.tensorboard import log_histograms
from fedmllm.utils.threads import resolve_threads

log = logging.getLogger(__name__)
RUN_CONFIG = "config.yaml"


def _clients(benchmark: Any, pooled: bool) -> tuple[list[Client], list[Client]]:
    clients = [Client(c.client_id, c.task, c.train, c.test) for c in benchmark.clients]
    if not pooled:
        return clients, clients
    pool = Client("pooled", "mixed", [s for c in clients for s in c.train], [])
    return [pool], clients


def build_results(
    cfg: DictConfig,
    method: Any,
    benchmark: str,
    out: dict[str, Any],
    clients: list[Client],
    validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``results.json`` payload of a finished run.

    ``validation`` holds the benchmark's record-validation counts (checked / skipped records).
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
    return {
        "method": method.name,
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


def _bind_federation(method: Any, aggregator: Any, client_ids: list[str]) -> None:
    """Check per-client options against the real client ids; tell the server its client count.

    ``method.client_ranks`` must name existing clients (a typo would silently give r_max);
    a rule that needs the federation's size N (SCAFFOLD) gets it when its config left it null.
    """
    ranks = getattr(method, "client_ranks", None) or {}
    unknown = sorted(set(ranks) - set(client_ids))
    if unknown:
        raise ValueError(
            f"method.client_ranks names clients {unknown} that this run does not have; "
            f"its training clients are {client_ids}"
        )
    if hasattr(aggregator, "num_clients") and aggregator.num_clients is None:
        aggregator.num_clients = len(client_ids)


@dataclass
class Components:
    """Everything a run is made of, built from one config."""

    benchmark: Any
    engine: Any
    method: Any
    aggregator: Any
    federation: FederationConfig
    train_clients: list[Client]
    eval_clients: list[Client]


def build_components(cfg: DictConfig) -> Components:
    """Instantiate benchmark → engine → method → aggregator from ``cfg`` (seeded)."""
    torch.set_num_threads(resolve_threads(cfg.get("threads", "auto")))
    L.seed_everything(cfg.seed, verbose=False)
    benchmark = instantiate(cfg.benchmark)
    # Live objects go in through partials: Hydra would try to turn them into config nodes.
    engine = instantiate(cfg.model, _partial_=True)(
        public=benchmark.public, vocabulary=benchmark.vocabulary()
    )
    # Re-seed so adapter initialisation does not depend on whether pretraining ran or was cached.
    L.seed_everything(cfg.seed, verbose=False)
    method = instantiate(cfg.method, _partial_=True)(engine=engine)
    aggregator = instantiate(cfg.aggregator)
    fed_cfg = FederationConfig(
        **OmegaConf.to_container(cfg.federation, resolve=True), seed=cfg.seed
    )
    # A benchmark may choose its clients' metrics (client id or task -> names); config wins.
    chosen = {k: v for k, v in fed_cfg.metrics.items() if v is not None}
    fed_cfg.metrics = {**dict(getattr(benchmark, "metrics", None) or {}), **chosen}
    train_clients, eval_clients = _clients(benchmark, method.pooled)
    _bind_federation(method, aggregator, [c.client_id for c in train_clients])
    if method.pooled:  # same total compute as the federation: K clients' steps in one
        fed_cfg.local_steps *= len(eval_clients)
    return Components(benchmark, engine, method, aggregator, fed_cfg, train_clients, eval_clients)


def make_fabric(cfg: DictConfig) -> tuple[L.Fabric, Any]:
    """A launched Fabric with the configured logger (or none)."""
    logger = instantiate(cfg.logger) if cfg.get("logger") else None
    fabric = L.Fabric(**cfg.fabric, loggers=logger)
    fabric.launch()
    return fabric, logger


def make_simulator(
    cfg: DictConfig,
    c: Components,
    run_dir: Path,
    on_round_end: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Simulator, Any]:
    """A launched Fabric (with the configured logger) and a Simulator over ``c``."""
    fabric, logger = make_fabric(cfg)
    method = fabric.to_device(c.method)
    sim = Simulator(
        fabric,
        c.engine,
        method,
        c.aggregator,
        c.train_clients,
        c.federation,
        run_dir,
        c.eval_clients,
        on_round_end,
    )
    return sim, logger


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
            done = Path(base.paths.output_dir) / "results.json"
        results["results_path"] = str(done)
        out[label] = results
    return out


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one federation as configured; returns ``(metrics, objects)``.

    With ``compare_with`` set, the named baselines run first (or finished runs with the same
    config are reused) and the final table shows all of them side by side.
    """
    baselines = run_baselines(cfg) if cfg.get("compare_with") else {}
    t0 = time.perf_counter()
    # One process runs every job of a Hydra multirun: make peak_rss_mb this run's own peak.
    rss_scope = "run" if reset_peak_rss() else "process"
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # The resolved config beside the checkpoint lets eval.py rebuild this run outside Hydra.
    OmegaConf.save(cfg, run_dir / RUN_CONFIG, resolve=True)
    c = build_components(cfg)
    rounds = c.federation.rounds

    def report_round(rnd: int, logs: dict[str, float]) -> None:
        losses = {k.split("/")[0]: round(v, 4) for k, v in logs.items() if k.endswith("train/loss")}
        extra = (
            f" avg test {100 * logs['round/avg/test/main']:.2f}"
            if "round/avg/test/main" in logs
            else ""
        )
        log.info("round %d/%d  loss %s  %.1fs%s", rnd, rounds, losses, logs["round/wall_s"], extra)
        log_histograms(logger, logs, rnd)

    sim, logger = make_simulator(cfg, c, run_dir, report_round)
    ckpt = resolve_resume(cfg.get("resume"), run_dir.parent, run_dir)
    if ckpt is not None:
        sim.resume_from(ckpt)
    out = sim.fit()
    out["wall_s"] = time.perf_counter() - t0
    validation = getattr(c.benchmark, "validation", None)
    results = build_results(cfg, sim.method, c.benchmark.name, out, c.eval_clients, validation)
    results["peak_rss_scope"] = rss_scope
    if ckpt is not None:
        results["resumed_from"] = str(ckpt)
    similarity = path_similarity(sim, c.engine.collator, c.eval_clients, cfg.get("analysis"))
    if similarity is not None:
        results["path_similarity"] = similarity
    if baselines:
        results["compared_with"] = {k: v["results_path"] for k, v in baselines.items()}
    write_json(run_dir / "results.json", results)
    reference = json.loads(Path(cfg.compare_to).read_text()) if cfg.get("compare_to") else None
    if baselines:  # the first baseline (Standalone) is the reference of the Δ columns
        runs = {**baselines, results["method"]: results}
        Console().print(side_by_side_table(runs, reference=next(iter(baselines))))
    else:
        Console().print(results_table(results, reference))
    log.info("results written to %s", run_dir / "results.json")
    if logger is not None:
        logger.finalize("success")
    return {"avg_main": results["avg"]}, {"simulator": sim, "results": results, "components": c}
