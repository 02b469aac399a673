"""Train a federation: ``python train.py experiment=fedmed_fedavg`` (Hydra)."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from fedmllm.train import run

log = logging.getLogger("fedmllm")


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run one training job and return the metric a sweeper optimises."""
    try:
        metrics, _ = run(cfg)
    except InstantiationException as e:  # a bad argument in a config: show the cause, not the stack
        log.error("configuration error: %s", e)
        sys.exit(2)
    except (ValueError, KeyError, FileNotFoundError) as e:
        log.error("error: %s", e)
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric", "avg_main"))


if __name__ == "__main__":
    main()
