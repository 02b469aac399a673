"""Evaluate a run without training: ``python eval.py ckpt_path=<run dir or last.ckpt>``.

Scores the global model and every client's personalised model on every client's test split
(add ``cross_client=false`` to score each personalised model on its own split only). Other
``key=value`` arguments override the run's config, e.g.
``federation.metrics.report=[bleu,rouge,bertscore]
federation.metric_options.bertscore.model=/models/roberta-large``. The same as
``python -m fedmllm.evaluate ...`` (:func:`fedmllm.evaluate.main`).
"""

import sys

from fedmllm.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
