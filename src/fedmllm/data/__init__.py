"""Data room: sample schema, benchmarks, partitioners, readers, imaging, validation, collate."""

from fedmllm.data.benchmark import Benchmark
from fedmllm.data.partition import PartitionConfig, partition
from fedmllm.data.schema import TASKS, ClientData, Sample, validate_sample

__all__ = [
    "TASKS",
    "Benchmark",
    "ClientData",
    "PartitionConfig",
    "Sample",
    "partition",
    "validate_sample",
]
