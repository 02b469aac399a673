"""Server rules: pure maths in ``functional``, one small stateful class per rule."""

from fedmllm.aggregators.base import Aggregator
from fedmllm.aggregators.fedavg import FedAvg, NoAggregation

__all__ = ["Aggregator", "FedAvg", "NoAggregation"]
