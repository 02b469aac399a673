"""Probing adapter paths: what each adapter path of one layer outputs on a fixed batch.

Fed-MoLE's Table 9 compares clients by the pairwise cosine similarity of the outputs of the
shared and the routed path of the last MoLE layer (and of the single LoRA path of the same
layer under FedAvg). These helpers capture a layer's input during a forward pass, split its
adapter output into named paths, and compare clients; they know nothing of federations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fedmllm.lora.layers import AdapterLayer, LoRALinear
from fedmllm.lora.mole import MoLELinear


def last_adapter_layer(
    model: nn.Module, kind: type[AdapterLayer] = AdapterLayer, leaf: str | None = None
) -> str:
    """Dotted name of the last adapter layer of ``kind`` in module order (deepest block).

    Args:
        model: The adapted model.
        kind: Adapter class to look for.
        leaf: Only layers whose last name component is ``leaf`` (e.g. ``up_proj``); when no
            such layer exists, any layer of ``kind``.

    Raises:
        ValueError: The model holds no adapter layer of ``kind``.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, kind)]
    if not names:
        raise ValueError(f"the model holds no {kind.__name__} layer to probe")
    preferred = [n for n in names if leaf is not None and n.rsplit(".", 1)[-1] == leaf]
    return (preferred or names)[-1]


def adapter_paths(layer: AdapterLayer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each adapter path's output of ``layer`` on input ``x`` (no dropout, base excluded).

    A :class:`MoLELinear` has ``shared`` and ``routed`` paths; a :class:`LoRALinear` one
    ``lora`` path.

    Raises:
        TypeError: Another adapter kind.
    """
    if isinstance(layer, MoLELinear):
        return layer.path_outputs(x)
    if isinstance(layer, LoRALinear):
        with torch.no_grad():
            lora_x = x.to(layer.lora_A.weight.dtype)
            return {"lora": layer.lora_B(layer.lora_A(lora_x)) * layer.scaling}
    raise TypeError(f"cannot split {type(layer).__name__} into adapter paths")


@torch.no_grad()
def probe_layer(
    model: nn.Module, layer_name: str, forward: Callable[[], Any]
) -> dict[str, torch.Tensor]:
    """Run ``forward()`` once and return the adapter paths of ``layer_name`` on its input.

    Args:
        model: The model holding the layer.
        layer_name: Dotted name of an adapter layer.
        forward: Runs the model on the probe batch (its return value is ignored).
    """
    layer = model.get_submodule(layer_name)
    if not isinstance(layer, AdapterLayer):
        raise TypeError(f"{layer_name!r} is {type(layer).__name__}, not an adapter layer")
    captured: list[torch.Tensor] = []

    def grab(_module: nn.Module, args: tuple[Any, ...]) -> None:
        captured.append(args[0].detach())

    handle = layer.register_forward_pre_hook(grab)
    try:
        forward()
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"{layer_name!r} ran {len(captured)} times in one probe forward")
    return adapter_paths(layer, captured[0])


def probe_model(
    model: nn.Module, layer_name: str, batch: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """:func:`probe_layer` on one batch of model inputs, in eval mode (no dropout).

    Args:
        model: The adapted model; called as ``model(**tensors of batch)`` (labels dropped).
        layer_name: Dotted name of the adapter layer to probe.
        batch: A collated batch; non-tensor entries are ignored.
    """
    device = next(model.parameters()).device
    inputs = {
        k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "labels"
    }
    was_training = model.training
    model.eval()
    try:
        return probe_layer(model, layer_name, lambda: model(**inputs))
    finally:
        model.train(was_training)


def cross_client_cosine(outputs: dict[str, torch.Tensor], mask: torch.Tensor | None) -> float:
    """Mean over client pairs of the mean per-token cosine similarity of their outputs.

    Args:
        outputs: Client id -> the same path's output on the same probe batch,
            shape ``(..., tokens, d)`` alike for every client.
        mask: Boolean ``(..., tokens)`` of the tokens to compare (e.g. the attention mask),
            or ``None`` for all.

    Returns:
        A value in [-1, 1]; a zero output vector counts as cosine 0.

    Raises:
        ValueError: Fewer than two clients, or shapes that differ.
    """
    ids = sorted(outputs)
    if len(ids) < 2:
        raise ValueError(f"cross-client similarity needs two clients or more, got {ids}")
    shape = outputs[ids[0]].shape
    if any(outputs[c].shape != shape for c in ids):
        shapes = {c: tuple(outputs[c].shape) for c in ids}
        raise ValueError(f"clients' outputs differ in shape: {shapes}")
    keep = torch.ones(shape[:-1], dtype=torch.bool) if mask is None else mask.bool().cpu()
    sims = []
    for a, b in itertools.combinations(ids, 2):
        cos = F.cosine_similarity(outputs[a].float().cpu(), outputs[b].float().cpu(), dim=-1)
        sims.append(cos[keep].mean())
    return torch.stack(sims).mean().item()
