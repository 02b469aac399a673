"""Results tables and comparisons over plain results data.

``results_table`` renders one run (printed at the end of ``train.py``); ``collect`` →
``compare`` → ``cells``/``export``/``plots`` turn many runs and multiruns into the
paper-style comparison (``python -m fedmllm.report``).
"""

from fedmllm.report.collect import Run, collect
from fedmllm.report.compare import Comparison, compare
from fedmllm.report.table import results_table

__all__ = ["Comparison", "Run", "collect", "compare", "results_table"]
