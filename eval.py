"""Evaluate a run without training: ``python eval.py ckpt_path=<run dir or last.ckpt>``.

Scores the global model and every client's personalised model on every client's test split
(add ``cross_client=false`` to score each personalised model on its own split only). Other
``key=value`` arguments override the run's config, e.g.
``federation.metrics.report=[bleu,rouge,bertscore]
federation.metric_options.bertscore.model=/models/roberta-large``.
"""

from __future__ import annotations

import logging
import sys

from omegaconf import OmegaConf

from fedmllm.evaluate import evaluate_run

log = logging.getLogger("fedmllm")


def main(argv: list[str]) -> int:
    """Parse ``key=value`` arguments: ``ckpt_path`` (required), ``cross_client`` (default true)
    and overrides of the run's config."""
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
    )
    cli = OmegaConf.from_dotlist(argv)
    ckpt = cli.pop("ckpt_path", None)
    cross_client = cli.pop("cross_client", True)
    if ckpt is None or not isinstance(cross_client, bool):
        log.error(
            "usage: python eval.py ckpt_path=<run dir or last.ckpt> [cross_client=true|false] "
            "[key=value ...]"
        )
        return 2
    try:
        evaluate_run(ckpt, cli if len(cli) else None, cross_client=cross_client)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        log.error("error: %s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
