"""Running a federation on Flower's simulation engine (Ray) in one machine.

The ServerApp runs in this process; the ClientApps run in Ray actors, one virtual SuperNode
per training client (``partition-id`` = the client's index). By default one actor gets every
CPU, so clients train one after another in one process sharing one engine — the simulator's
memory profile — while everything still goes through Flower's messages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate

from fedmllm.deploy.flower.client_app import make_client_app
from fedmllm.deploy.flower.config import (
    CONFIG_DIR_KEY,
    OVERRIDES_KEY,
    compose_config,
    split_overrides,
)
from fedmllm.deploy.flower.server_app import make_server_app

log = logging.getLogger(__name__)


def count_clients(overrides: list[str], config_dir: str | None = None) -> int:
    """Training clients of the composed benchmark (one virtual SuperNode each)."""
    cfg = compose_config(overrides, config_dir)
    return len(instantiate(cfg.benchmark).clients)


def backend_config(num_cpus: int | None = None, client_cpus: int | None = None) -> dict[str, Any]:
    """Ray settings: ``num_cpus`` for Ray in all, ``client_cpus`` per actor (default: all, so
    one actor)."""
    total = int(num_cpus or os.cpu_count() or 1)
    per_client = int(client_cpus or total)
    if not 1 <= per_client <= total:
        raise ValueError(f"client_cpus must be between 1 and num_cpus={total}, got {per_client}")
    return {
        "client_resources": {"num_cpus": per_client, "num_gpus": 0.0},
        "init_args": {"num_cpus": total, "include_dashboard": False, "log_to_driver": True},
    }


def run_simulation(
    run_config: Mapping[str, Any],
    num_supernodes: int | None = None,
    num_cpus: int | None = None,
    client_cpus: int | None = None,
) -> None:
    """Run the federation of ``run_config`` on Flower's simulation engine.

    Args:
        run_config: As ``flwr run``'s: ``overrides`` (Hydra overrides as one string), optional
            ``config-dir`` and the deployment options (``min-replies``, ``round-timeout``...).
        num_supernodes: Virtual SuperNodes (default: one per training client).
        num_cpus: CPUs Ray may use (default: all).
        client_cpus: CPUs per ClientApp actor (default: all, i.e. one actor).
    """
    from flwr.simulation import run_simulation as flwr_run_simulation

    config = dict(run_config)
    overrides = split_overrides(str(config.get(OVERRIDES_KEY, "")))
    if num_supernodes is None:
        num_supernodes = count_clients(overrides, config.get(CONFIG_DIR_KEY) or None)
    log.info("Flower simulation: %d SuperNodes, overrides %s", num_supernodes, overrides)
    flwr_run_simulation(
        server_app=make_server_app(config),
        client_app=make_client_app(config),
        num_supernodes=num_supernodes,
        backend_config=backend_config(num_cpus, client_cpus),
    )
