"""Adapter layers, their injection into a model, and adapter state (get/set, save/load)."""

from fedmllm.lora.inject import (
    LayerFactory,
    available_linear_names,
    freeze_non_adapter,
    inject_lora,
    replace_linear_layers,
)
from fedmllm.lora.layers import AdapterLayer, LoRALinear, default_adapter_dtype
from fedmllm.lora.mole import MoLELinear, check_mole_sizes, inject_mole
from fedmllm.lora.pair import LowRankPair, adapter_dropout, init_low_rank, low_rank_factors
from fedmllm.lora.probe import (
    adapter_paths,
    cross_client_cosine,
    last_adapter_layer,
    probe_layer,
    probe_model,
)
from fedmllm.lora.router import (
    Routing,
    RoutingStats,
    TopKRouter,
    expert_counts,
    load_balancing_loss,
    router_entropy,
)
from fedmllm.lora.state import (
    adapter_parameter_names,
    filter_state,
    get_adapter_state,
    load_adapter,
    save_adapter,
    set_adapter_state,
    state_bytes,
)

__all__ = [
    "AdapterLayer",
    "LayerFactory",
    "LoRALinear",
    "LowRankPair",
    "MoLELinear",
    "Routing",
    "RoutingStats",
    "TopKRouter",
    "adapter_dropout",
    "adapter_parameter_names",
    "adapter_paths",
    "available_linear_names",
    "check_mole_sizes",
    "cross_client_cosine",
    "default_adapter_dtype",
    "expert_counts",
    "filter_state",
    "freeze_non_adapter",
    "get_adapter_state",
    "init_low_rank",
    "inject_lora",
    "inject_mole",
    "last_adapter_layer",
    "load_adapter",
    "load_balancing_loss",
    "low_rank_factors",
    "probe_layer",
    "probe_model",
    "router_entropy",
    "replace_linear_layers",
    "save_adapter",
    "set_adapter_state",
    "state_bytes",
]
