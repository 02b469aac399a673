"""From a composed config to live objects: what every entry point builds the same way.

``train`` (a run), ``evaluate`` (a finished run scored again) and the Flower apps (the server
and each node) all start here: benchmark → engine → method → rule, seeded identically, then
a Fabric and, in one process, a :class:`Simulator`. This module holds no Hydra app and runs
nothing: the entry points own the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from fedmllm import compat
from fedmllm.config_check import ConfigError, check_clients_per_round, validate_config
from fedmllm.configs import CONFIG_DIR
from fedmllm.federation import FederationConfig, Simulator
from fedmllm.federation.attacks import Attack
from fedmllm.federation.config import Client
from fedmllm.methods.dp_sgd_addon import DPSGD
from fedmllm.privacy import privacy_config
from fedmllm.utils.threads import resolve_threads


def _clients(data: list[Any], pooled: bool) -> tuple[list[Client], list[Client]]:
    clients = [Client(c.client_id, c.task, c.train, c.test, getattr(c, "val", [])) for c in data]
    if not pooled:
        return clients, clients
    pool = Client("pooled", "mixed", [s for c in clients for s in c.train], [])
    return [pool], clients


def _bind_federation(method: Any, aggregator: Any, client_ids: list[str]) -> None:
    """Check per-client options against the real client ids; tell the server its client count.

    The method refuses options naming clients the run does not have (``bind_clients``); a
    rule that needs the federation's size N (SCAFFOLD) gets it when its config left it null; a
    rule that reads the method's public constants (FedA² on VeRA) gets them.
    """
    method.bind_clients(client_ids)
    if hasattr(aggregator, "bind_constants"):  # public frozen tensors (VeRA's projections)
        aggregator.bind_constants(method.server_constants())
    if hasattr(aggregator, "num_clients") and aggregator.num_clients is None:
        aggregator.num_clients = len(client_ids)


def _bind_privacy(
    cfg: DictConfig, method: Any, fed_cfg: FederationConfig, train_clients: list[Client]
) -> None:
    """``privacy``: the settings go to the round (client DP); DP-SGD joins the method's add-ons.

    Raises:
        ConfigError: An unknown privacy option or a value out of range.
    """
    try:
        privacy = privacy_config(cfg.get("privacy"))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    fed_cfg.privacy = privacy
    if privacy.mode == "dp_sgd":
        sizes = {c.client_id: len(c.train) for c in train_clients}
        batch = fed_cfg.batch_size * method.grad_accum
        method.add_addon(DPSGD(privacy, sizes, batch, fed_cfg.rounds * fed_cfg.local_steps))


def rule_catalogue(config_dir: Path = CONFIG_DIR) -> dict[str, tuple[Any, Any]]:
    """``aggregator=<name>`` -> (requires, provides) of every packaged rule config, read from
    the classes (nothing is instantiated)."""
    out = {}
    for path in sorted((config_dir / "aggregator").glob("*.yaml")):
        rule = get_class(OmegaConf.load(path)["_target_"])
        out[path.stem] = (rule.requires, rule.provides)
    return out


def check_pair(method: Any, rule_cfg: DictConfig) -> None:
    """Refuse a method and a server rule that do not belong together, before the rule is built.

    Raises:
        ValueError: One sentence naming what is missing and the rules that fit.
    """
    rule = get_class(rule_cfg["_target_"])
    why = compat.refusal(
        method.name,
        rule.name,
        method.offers(),
        method.needs(),
        rule.requires,
        rule.provides,
        rule_catalogue(),
    )
    if why is not None:
        raise ValueError(why)


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
    retrieval: dict[str, Any] | None = None  # the case libraries' facts (retrieval runs)


def _retrieve(cfg: DictConfig, benchmark: Any, engine: Any) -> tuple[list[Any], Any]:
    """The clients with retrieved cases in their prompts (``retrieval`` set), else as they are.

    Runs on the frozen base before any adapter exists, so the libraries are adapter-free.
    """
    if not cfg.get("retrieval"):
        return list(benchmark.clients), None
    augmenter = instantiate(cfg.retrieval)
    return augmenter.apply(benchmark.clients, engine, pooled=bool(cfg.method.get("pooled")))


def build_components(cfg: DictConfig) -> Components:
    """Instantiate benchmark → engine → method → aggregator from ``cfg`` (seeded).

    Raises:
        ConfigError: A setting out of range or an unknown option (``fedmllm.config_check``),
            before anything is built; a count of clients per round above the benchmark's
            clients, before the model is built.
    """
    validate_config(cfg)
    torch.set_num_threads(resolve_threads(cfg.get("threads", "auto")))
    L.seed_everything(cfg.seed, verbose=False)
    benchmark = instantiate(cfg.benchmark)
    check_clients_per_round(cfg.federation.clients_per_round, len(benchmark.clients))
    # Live objects go in through partials: Hydra would try to turn them into config nodes.
    engine = instantiate(cfg.model, _partial_=True)(
        public=benchmark.public, vocabulary=benchmark.vocabulary()
    )
    data, retrieval = _retrieve(cfg, benchmark, engine)
    # Re-seed so adapter initialisation does not depend on whether pretraining ran or was cached.
    L.seed_everything(cfg.seed, verbose=False)
    method = instantiate(cfg.method, _partial_=True)(engine=engine)
    check_pair(method, cfg.aggregator)
    aggregator = instantiate(cfg.aggregator)
    fed_cfg = FederationConfig(
        **OmegaConf.to_container(cfg.federation, resolve=True), seed=cfg.seed
    )
    fed_cfg.attack = (
        dict(OmegaConf.to_container(cfg.attack, resolve=True) or {}) if cfg.get("attack") else {}
    )
    # A benchmark may choose its clients' metrics (client id or task -> names); config wins.
    chosen = {k: v for k, v in fed_cfg.metrics.items() if v is not None}
    fed_cfg.metrics = {**dict(getattr(benchmark, "metrics", None) or {}), **chosen}
    train_clients, eval_clients = _clients(data, method.pooled)
    _bind_federation(method, aggregator, [c.client_id for c in train_clients])
    Attack.from_config(fed_cfg.attack).attackers([c.client_id for c in train_clients])
    if method.pooled:  # same total compute as the federation: K clients' steps in one
        fed_cfg.local_steps *= len(eval_clients)
    _bind_privacy(cfg, method, fed_cfg, train_clients)
    return Components(
        benchmark, engine, method, aggregator, fed_cfg, train_clients, eval_clients, retrieval
    )


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
    """A launched Fabric (with the configured logger) and a Simulator over ``c``; its
    checkpoints record ``cfg`` resolved."""
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
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )
    return sim, logger
