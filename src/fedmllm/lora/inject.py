"""Inject adapter layers into a model by target-module names.

The walk is generic: :func:`replace_linear_layers` swaps chosen ``nn.Linear`` modules for
whatever a factory builds, so MoLE and modality-expert layers reuse it; :func:`inject_lora`
is the plain-LoRA front end that also freezes everything except the adapters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from fedmllm.lora.layers import AdapterLayer, LoRALinear
from fedmllm.lora.state import adapter_parameter_names

LayerFactory = Callable[[str, nn.Linear], AdapterLayer]
"""Builds the adapter layer that replaces the linear module at a dotted name."""


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _inside(name: str, path: str) -> bool:
    """Whether ``name`` is a strict descendant of the module at ``path`` ("" is the root)."""
    return name.startswith(path + ".") if path else bool(name)


def _outside_adapters(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named modules, skipping the internals of adapter layers (their base_layer, lora_A, ...).

    The adapter layers themselves are kept so that a second injection can be detected.
    """
    adapter_paths: list[str] = []
    kept: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(_inside(name, p) for p in adapter_paths):
            continue
        if isinstance(module, AdapterLayer):
            adapter_paths.append(name)
        kept.append((name, module))
    return kept


def available_linear_names(model: nn.Module) -> list[str]:
    """Sorted, deduplicated last name components of the model's ``nn.Linear`` modules.

    Linear layers inside adapter layers (``base_layer``, ``lora_A``, ...) are not listed.
    """
    names = {
        _leaf(name)
        for name, module in _outside_adapters(model)
        if name and isinstance(module, nn.Linear)
    }
    return sorted(names)


def check_targets_exist(model: nn.Module, target_modules: Iterable[str]) -> None:
    """Raise naming the available Linear names unless every target names a module."""
    # Adapter layers count as existing so that re-injection reaches the clearer error below.
    leaves = {_leaf(name) for name, _ in _outside_adapters(model) if name}
    unknown = sorted(set(target_modules) - leaves)
    if unknown:
        raise ValueError(
            f"target modules {unknown} match no module in the model; available Linear names: "
            f"{available_linear_names(model)}"
        )


def _select(
    model: nn.Module, target_modules: list[str], module_filter: str | None
) -> list[tuple[str, nn.Module]]:
    pattern = re.compile(module_filter) if module_filter is not None else None
    targets = set(target_modules)
    selected = []
    for name, module in _outside_adapters(model):
        if not name or _leaf(name) not in targets:
            continue
        if pattern is not None and not pattern.search(name):
            continue
        if isinstance(module, AdapterLayer):
            raise ValueError(
                f"module {name!r} already holds an adapter ({type(module).__name__}); "
                "injecting twice into the same module is not supported"
            )
        if not isinstance(module, nn.Linear):
            raise ValueError(
                f"module {name!r} matches a target but is {type(module).__name__}, not nn.Linear"
            )
        selected.append((name, module))
    return selected


def replace_linear_layers(
    model: nn.Module,
    target_modules: list[str],
    factory: LayerFactory,
    module_filter: str | None = None,
) -> list[str]:
    """Replace targeted ``nn.Linear`` modules with adapter layers built by ``factory``.

    A module is targeted when the last component of its dotted name is in ``target_modules``
    and, if ``module_filter`` is given, ``re.search(module_filter, name)`` matches its full
    dotted name. All modules are validated before any is replaced, so a failed call leaves
    the model untouched. Parameters are not (un)frozen here.

    Args:
        model: The model to modify in place.
        target_modules: Leaf names such as ``["q_proj", "v_proj"]``.
        factory: Called as ``factory(name, linear)``; must return an :class:`AdapterLayer`.
        module_filter: Optional regex on full dotted names, e.g. ``r"language_model\\."``.

    Returns:
        The sorted dotted names of the replaced modules.

    Raises:
        ValueError: A target matches no module, a match is not ``nn.Linear``, a match already
            holds an adapter, or the filter leaves nothing to replace.
        TypeError: The factory returned something other than an adapter layer.
    """
    if not target_modules:
        raise ValueError("target_modules is empty")
    check_targets_exist(model, target_modules)
    selected = _select(model, list(target_modules), module_filter)
    if not selected:
        raise ValueError(
            f"no module named {sorted(set(target_modules))} matches module_filter {module_filter!r}"
        )
    for name, linear in selected:
        layer = factory(name, linear)
        if not isinstance(layer, AdapterLayer):
            raise TypeError(
                f"layer factory returned {type(layer).__name__} for {name!r}; "
                "expected an AdapterLayer"
            )
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer)
    return sorted(name for name, _ in selected)


def freeze_non_adapter(model: nn.Module) -> None:
    """Make adapter parameters trainable and every other parameter frozen."""
    adapter = set(adapter_parameter_names(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in adapter)


def inject_lora(
    model: nn.Module,
    target_modules: list[str],
    module_filter: str | None = None,
    layer_factory: LayerFactory | None = None,
    **lora_args: Any,
) -> list[str]:
    """Wrap targeted linear layers with :class:`LoRALinear` and freeze all else.

    Afterwards every adapter parameter of the model (including those of earlier injections)
    is trainable and every other parameter is frozen.

    Args:
        model: The model to modify in place.
        target_modules: Leaf names of the linear layers to wrap, e.g. ``["q_proj", "v_proj"]``.
        module_filter: Optional regex searched in full dotted names (None: all modules).
        layer_factory: Optional ``factory(name, linear) -> AdapterLayer`` that replaces the
            default LoRA layer (``lora_args`` are then the factory's business).
        **lora_args: :class:`LoRALinear`'s arguments (``r``, ``alpha``, ``dropout``,
            ``use_rslora``).

    Returns:
        The sorted dotted names of the replaced modules.

    Raises:
        ValueError: A bad rank (raised by the first layer, before any module is replaced), or
            see :func:`replace_linear_layers`.
    """
    if layer_factory is None:

        def layer_factory(_name: str, linear: nn.Linear) -> AdapterLayer:
            return LoRALinear(linear, **lora_args)

    replaced = replace_linear_layers(model, target_modules, layer_factory, module_filter)
    freeze_non_adapter(model)
    return replaced
