"""Results tables and comparisons over plain results data."""

from fedmllm.report.table import results_table

__all__ = ["results_table"]
