"""The frozen base weights under adapter layers: read, add a server delta, restore.

Some server rules change the frozen weight every client shares (FedEx-LoRA folds its
residual into it, FRLoRA refreshes it each round). Keys read like PEFT's:
``<module path>.base_layer.weight``. Only weights wrapped by an adapter layer are reachable,
which is exactly what those rules touch; everything is validated before anything changes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from fedmllm.lora.layers import AdapterLayer
from fedmllm.types import AdapterState

BASE_SUFFIX = ".base_layer.weight"


def base_weight_entries(model: nn.Module) -> dict[str, tuple[nn.Parameter, AdapterLayer]]:
    """``<path>.base_layer.weight`` of every adapter layer, with its layer.

    (An adapter layer's ``base_layer`` is always a plain ``nn.Linear``, so layers never nest.)
    """
    return {
        f"{name}{BASE_SUFFIX}": (module.base_layer.weight, module)
        for name, module in model.named_modules()
        if isinstance(module, AdapterLayer)
    }


def _resolve(
    model: nn.Module, state: AdapterState, what: str
) -> list[tuple[nn.Parameter, torch.Tensor]]:
    entries = base_weight_entries(model)
    unknown = sorted(k for k in state if k not in entries)
    if unknown:
        raise KeyError(
            f"{what}: {len(unknown)} keys are not base weights of adapter layers, e.g. "
            f"{unknown[:3]}; expected keys like {sorted(entries)[:2]}"
        )
    pairs = []
    for key, value in state.items():
        param, layer = entries[key]
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(
                f"{what}: shape mismatch for {key!r}: got {tuple(value.shape)}, "
                f"weight is {tuple(param.shape)}"
            )
        if layer.merged:
            raise RuntimeError(f"{what}: {key!r} belongs to a merged adapter layer; unmerge it")
        pairs.append((param, value))
    return pairs


def get_base_weights(model: nn.Module, keys: Iterable[str]) -> AdapterState:
    """CPU copies of the named base weights."""
    entries = base_weight_entries(model)
    keys = list(keys)
    unknown = [k for k in keys if k not in entries]
    if unknown:
        raise KeyError(f"not base weights of adapter layers: {sorted(unknown)[:3]}")
    return {k: entries[k][0].detach().to("cpu", copy=True) for k in keys}


@torch.no_grad()
def add_to_base_weights(model: nn.Module, deltas: AdapterState) -> None:
    """``W0 += delta`` in place for every key (cast to the weight's dtype and device)."""
    for param, delta in _resolve(model, deltas, "add_to_base_weights"):
        param.add_(delta.to(device=param.device, dtype=param.dtype))


@torch.no_grad()
def set_base_weights(model: nn.Module, state: AdapterState) -> None:
    """Copy saved base weights back in place (a checkpoint's modified base)."""
    for param, value in _resolve(model, state, "set_base_weights"):
        param.copy_(value)
