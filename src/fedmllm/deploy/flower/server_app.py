"""The Flower ServerApp: compose the run's config, drive the strategy, write ``results.json``.

The server builds the same components as ``train.py`` (benchmark, engine, method, aggregator,
seeded identically): the method's initial adapter is the initial global state, its hooks say
what each client may send, and the aggregator is the server rule. It never trains and never
sees a client's data or private tensors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from safetensors.torch import save_file

from fedmllm.build import Components, build_components
from fedmllm.deploy.flower.base_sync import BaseSync
from fedmllm.deploy.flower.config import (
    CONFIG_DIR_KEY,
    OVERRIDES_KEY,
    FlowerOptions,
    compose_config,
    split_overrides,
)
from fedmllm.deploy.flower.records import Shapes, shapes
from fedmllm.deploy.flower.resume import (
    RESUME_KEY,
    SERVER_CHECKPOINT,
    load_server_checkpoint,
    restore_server,
    save_server_checkpoint,
)
from fedmllm.deploy.flower.secagg import SecureAggregation, check_secagg
from fedmllm.deploy.flower.strategy import FedMLLMStrategy, Shareable
from fedmllm.federation.server_round import RoundServer, build_round_server
from fedmllm.run_files import RESULTS_FILE, build_results, save_run_config
from fedmllm.types import AdapterState
from fedmllm.utils.io import write_json

log = logging.getLogger(__name__)

GLOBAL_ADAPTER = "global_adapter.safetensors"
"""The final global shared state, beside ``results.json``."""


def make_round_server(c: Components) -> tuple[RoundServer, AdapterState]:
    """The server half over ``c`` and the method's initial adapter state."""
    method = c.method
    if method.pooled:
        raise ValueError(
            f"method {method.name!r} pools every client's data in one place; it has no "
            "federated deployment (run it with train.py)"
        )
    initial = method.adapter_state()
    ids = [cl.client_id for cl in c.train_clients]
    return build_round_server(method, c.aggregator, initial, ids, c.federation), initial


def shareable_fn(method: Any, server: RoundServer, initial: AdapterState) -> Shareable:
    """``(client id, extras) → shapes of the update and of the extras the client may send``:
    the method's shared keys, after hearing the round's extras (FedLEASE's phase), at the
    client's rank; extras as the method's ``client_extras_shapes`` says."""

    def shareable(client_id: str, extras: AdapterState) -> tuple[Shapes, Shapes]:
        method.begin_client(client_id, dict(extras))
        rank = server.rank(client_id)
        base = initial if rank is None else server.aggregator.for_client(initial, rank)
        shared = {k: base[k] for k in method.shared_keys(initial) if k in base}
        return shapes(shared), method.client_extras_shapes(shared)

    return shareable


def run_server(grid: Grid, run_config: Mapping[str, Any]) -> dict[str, Any]:
    """Run a whole federation on ``grid`` and write its results; returns them.

    Args:
        grid: Flower's grid (its type tells a simulation from a deployment in the results).
        run_config: ``overrides`` (Hydra), optional ``config-dir``, ``resume-from`` (a run
            directory or its ``flower_server.ckpt``: continue after its last round) and the
            :class:`FlowerOptions` keys.
    """
    mode = "simulation" if "InMemory" in type(grid).__name__ else "deployment"
    t0 = time.perf_counter()
    cfg = compose_config(
        split_overrides(str(run_config.get(OVERRIDES_KEY, ""))),
        str(run_config.get(CONFIG_DIR_KEY) or "") or None,
    )
    options = FlowerOptions.from_config(run_config)
    run_dir = Path(cfg.paths.output_dir)
    save_run_config(cfg, run_dir)
    c = build_components(cfg)
    if options.secagg:
        check_secagg(c.aggregator, c.method)  # before any round: robust rules are refused
    server, initial = make_round_server(c)
    fed = c.federation
    strategy = FedMLLMStrategy(
        server,
        shareable_fn(c.method, server, initial),
        fed.rounds,
        fed.eval_every,
        options,
        [cl.client_id for cl in c.eval_clients],
        fed.drift,
        fed.drift_pairwise_max,
        base=BaseSync(c.method),
    )
    if options.secagg:
        strategy.secure = SecureAggregation(
            options.secagg_clip, options.secagg_max_weight, timeout=options.round_timeout
        )
    resume = str(run_config.get(RESUME_KEY) or "")
    strategy.state_run = str(grid.run.run_id)
    if resume:
        restore_server(strategy, load_server_checkpoint(resume), set(initial))
        log.info(
            "resuming %s after round %d (node state of run %s)",
            resume,
            strategy.completed,
            strategy.state_run,
        )
    if fed.checkpoint:
        ckpt = run_dir / SERVER_CHECKPOINT
        strategy.on_round_end = lambda _: save_server_checkpoint(ckpt, strategy)
    strategy.fit(grid)
    results = _results(cfg, c, strategy, time.perf_counter() - t0)
    if resume:
        results["resumed_from"] = resume
    results["deploy"] = {"engine": "flower", "mode": mode, **_deploy_facts(strategy, options)}
    results["config"]["deploy"] = {"engine": "flower", "mode": mode}
    tmp = run_dir / f"{GLOBAL_ADAPTER}.tmp"  # atomic: a crash never leaves half a file
    save_file({k: v.contiguous() for k, v in server.global_state.items()}, tmp)
    os.replace(tmp, run_dir / GLOBAL_ADAPTER)
    write_json(run_dir / RESULTS_FILE, results)
    log.info("results written to %s", run_dir / RESULTS_FILE)
    return results


def _results(cfg: Any, c: Components, strategy: FedMLLMStrategy, wall_s: float) -> dict[str, Any]:
    scores, baselines = strategy.final_scores, strategy.baselines()
    scored = [cl for cl in c.eval_clients if cl.client_id in scores and cl.client_id in baselines]
    if not scored:
        raise RuntimeError("no client returned its final scores: nothing to report")
    missing = sorted({cl.client_id for cl in c.eval_clients} - {cl.client_id for cl in scored})
    if missing:
        log.warning("clients without final scores, left out of results.json: %s", missing)
    out = strategy.ledger.outcome(scores, baselines, wall_s, strategy.server.describe())
    validation = getattr(c.benchmark, "validation", None)
    results = build_results(cfg, c.method, c.benchmark.name, out, scored, validation, c.aggregator)
    results["peak_rss_scope"] = "server"
    return results


def _deploy_facts(strategy: FedMLLMStrategy, options: FlowerOptions) -> dict[str, Any]:
    rounds = [h for h in strategy.ledger.history if "aggregated" in h]
    return {
        "options": options.as_run_config(),
        "nodes": {cid: info.node_id for cid, info in strategy.nodes.items()},
        "eval_down_bytes": strategy.eval_down_bytes,
        "failed_replies": sum(len(h["failed"]) for h in rounds),
        "rejected_replies": sum(len(h["rejected"]) for h in rounds),
    }


def make_server_app(defaults: dict[str, Any] | None = None) -> ServerApp:
    """A ServerApp running :func:`run_server`; ``defaults`` fill keys the run config lacks."""
    app = ServerApp()
    base = dict(defaults or {})

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, {**base, **dict(context.run_config)})

    return app
