"""Evaluate a run without training: ``python eval.py ckpt_path=<run dir or last.ckpt>``."""

from __future__ import annotations

import logging
import sys

from omegaconf import OmegaConf

from fedmllm.evaluate import evaluate_run

log = logging.getLogger("fedmllm")


def main(argv: list[str]) -> int:
    """Parse ``key=value`` arguments: ``ckpt_path`` (required) and overrides of the run's config."""
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
    )
    cli = OmegaConf.from_dotlist(argv)
    ckpt = cli.pop("ckpt_path", None)
    if ckpt is None:
        log.error("usage: python eval.py ckpt_path=<run dir or last.ckpt> [key=value ...]")
        return 2
    try:
        evaluate_run(ckpt, cli if len(cli) else None)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        log.error("error: %s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
