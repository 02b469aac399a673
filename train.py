"""Train a federation: ``python train.py experiment=fedmed_fedavg`` (Hydra)."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from fedmllm.train import run

log = logging.getLogger("fedmllm")


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run one training job and return the metric a sweeper optimises."""
    try:
        metrics, _ = run(cfg)
    except (InstantiationException, ValueError, KeyError, FileNotFoundError) as e:
        # A bad argument in a config: show the cause, not the stack.
        kind = "configuration error" if isinstance(e, InstantiationException) else "error"
        log.error("%s: %s", kind, e)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records the failed job and goes on with the rest of the sweep
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric", "avg_main"))


if __name__ == "__main__":
    main()
