"""Data room: sample schema, benchmarks, partitioners and collate."""

from fedmllm.data.schema import TASKS, ClientData, Sample, validate_sample

__all__ = ["TASKS", "ClientData", "Sample", "validate_sample"]
