"""Server rules: pure maths in ``functional``/``lowrank``/``server_optim``, one class per rule."""

from fedmllm.aggregators.base import Aggregator, ScaledRule
from fedmllm.aggregators.basefold import FedExLoRA, FRLoRA
from fedmllm.aggregators.fedavg import FedAvg, NoAggregation
from fedmllm.aggregators.fedopt import FedAdagrad, FedAdam, FedOpt, FedYogi
from fedmllm.aggregators.flexlora import FlexLoRA
from fedmllm.aggregators.ridge import FedA2LoRA
from fedmllm.aggregators.robust import (
    Bulyan,
    CoordinateMedian,
    Krum,
    MultiKrum,
    NormBoundedMean,
    RobustRule,
    TrimmedMean,
)

__all__ = [
    "Aggregator",
    "Bulyan",
    "CoordinateMedian",
    "Krum",
    "MultiKrum",
    "NormBoundedMean",
    "RobustRule",
    "TrimmedMean",
    "FRLoRA",
    "FedA2LoRA",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedExLoRA",
    "FedOpt",
    "FedYogi",
    "FlexLoRA",
    "NoAggregation",
    "ScaledRule",
]
