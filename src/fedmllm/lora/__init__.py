"""Adapter layers, their injection into a model, and adapter state (get/set, save/load)."""

from fedmllm.lora.inject import (
    LayerFactory,
    available_linear_names,
    freeze_non_adapter,
    inject_lora,
    replace_linear_layers,
)
from fedmllm.lora.layers import AdapterLayer, LoRALinear, default_adapter_dtype
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
    "adapter_parameter_names",
    "available_linear_names",
    "default_adapter_dtype",
    "filter_state",
    "freeze_non_adapter",
    "get_adapter_state",
    "inject_lora",
    "load_adapter",
    "replace_linear_layers",
    "save_adapter",
    "set_adapter_state",
    "state_bytes",
]
