"""Adapter state: read, write in place, filter, measure, save and load in PEFT format.

Keys are parameter names relative to the model root, e.g.
``model.layers.0.self_attn.q_proj.lora_A.weight`` — PEFT's keys without the adapter name
and without PEFT's ``base_model.model.`` wrapper prefix (added on save, stripped on load).

Swapping a client's adapter into the shared engine must copy tensors into the existing
parameters: reallocating them would detach optimiser state and any references, and
``load_state_dict(strict=False)`` with wrong keys loads nothing without complaint. Hence
:func:`set_adapter_state` copies in place and refuses keys it does not know.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fedmllm.lora.layers import AdapterLayer
from fedmllm.types import AdapterState, state_nbytes

PEFT_PREFIX = "base_model.model."
"""What PEFT's ``save_pretrained`` puts in front of every key of ``adapter_model.safetensors``."""
WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"

# Fields PEFT's LoraConfig reads; user-given values override these.
_PEFT_DEFAULTS: dict[str, Any] = {
    "peft_type": "LORA",
    "task_type": None,
    "base_model_name_or_path": None,
    "lora_dropout": 0.0,
    "use_rslora": False,
    "bias": "none",
    "fan_in_fan_out": False,
    "init_lora_weights": True,
    "inference_mode": True,
    "modules_to_save": None,
    "use_dora": False,
    "layers_to_transform": None,
    "layers_pattern": None,
    "rank_pattern": {},
    "alpha_pattern": {},
}


def _adapter_entries(model: nn.Module) -> dict[str, tuple[nn.Parameter, AdapterLayer]]:
    """Adapter parameters by name, each with the outermost adapter layer that owns it."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, AdapterLayer)}
    entries: dict[str, tuple[nn.Parameter, AdapterLayer]] = {}
    if not layers:
        return entries
    for pname, param in model.named_parameters():
        parts = pname.split(".")
        # Shortest prefix first: the outermost adapter layer decides, so a base_layer and
        # everything under it stays frozen model weight.
        for i in range(len(parts)):
            path = ".".join(parts[:i])
            if path in layers:
                if parts[i] != "base_layer":
                    entries[pname] = (param, layers[path])
                break
    return entries


def adapter_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters inside adapter layers, excluding their ``base_layer``.

    Args:
        model: Any module; names are relative to it.

    Returns:
        Parameter names in the model's registration order.
    """
    return list(_adapter_entries(model))


def _preview(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{keys[:limit]}{more}"


def get_adapter_state(model: nn.Module, keys: Iterable[str] | None = None) -> AdapterState:
    """Detached, contiguous CPU copies of the model's adapter parameters.

    Args:
        model: The model holding adapter layers.
        keys: Only these parameters (all adapter parameters when None).

    Returns:
        A fresh state that later training does not alter.

    Raises:
        KeyError: A requested key is not an adapter parameter of the model.
    """
    entries = _adapter_entries(model)
    names = list(entries) if keys is None else list(keys)
    unknown = [k for k in names if k not in entries]
    if unknown:
        raise KeyError(f"not adapter parameters of the model: {_preview(unknown)}")
    state: AdapterState = {}
    for name in names:
        param = entries[name][0].detach()
        copy = torch.empty(param.shape, dtype=param.dtype, device="cpu")
        state[name] = copy.copy_(param)
    return state


def set_adapter_state(model: nn.Module, state: AdapterState, strict: bool = True) -> None:
    """Copy a (possibly partial) adapter state into the model's parameters in place.

    Parameters are never reallocated (``param.copy_(value)`` under ``no_grad``), so optimiser
    state and references stay valid; values are cast to each parameter's dtype and device.
    A state that covers only some adapter parameters is normal (e.g. only the shared keys):
    the others keep their values. Everything is validated before anything is copied.

    Args:
        model: The model holding adapter layers.
        state: Tensors keyed by adapter parameter name.
        strict: Raise on keys that are not adapter parameters of the model. With False they
            are skipped, but a non-empty state of which no key matches still raises: that is
            always a key-format bug, never an intended no-op.

    Raises:
        KeyError: Unknown keys (strict), or no key matches at all.
        ValueError: A tensor's shape differs from its parameter's (the key is named).
        RuntimeError: A targeted adapter layer is merged (its base weight would go stale).
    """
    entries = _adapter_entries(model)
    unknown = [k for k in state if k not in entries]
    if unknown and (strict or len(unknown) == len(state)):
        raise KeyError(
            f"{len(unknown)} of {len(state)} keys are not adapter parameters of the model: "
            f"{_preview(unknown)}; expected keys like {_preview(entries, 3)}"
        )
    known = [k for k in state if k in entries]
    for key in known:
        param, layer = entries[key]
        if tuple(state[key].shape) != tuple(param.shape):
            raise ValueError(
                f"shape mismatch for {key!r}: state has {tuple(state[key].shape)}, "
                f"model has {tuple(param.shape)}"
            )
        if layer.merged:
            raise RuntimeError(f"cannot load {key!r}: its adapter layer is merged; unmerge it")
    with torch.no_grad():
        for key in known:
            entries[key][0].copy_(state[key])


def filter_state(
    state: AdapterState, keep: Callable[[str], bool] | str | Iterable[str]
) -> AdapterState:
    """The sub-state whose keys pass ``keep`` (tensors are shared, not copied).

    Args:
        state: The state to filter.
        keep: A predicate on keys, or one or more substrings of which a key must contain
            at least one (e.g. ``"lora_A"`` or ``["q_proj", "v_proj"]``).

    Returns:
        A new dict in the original key order.
    """
    if callable(keep):
        predicate = keep
    else:
        parts = [keep] if isinstance(keep, str) else list(keep)

        def predicate(key: str) -> bool:
            return any(p in key for p in parts)

    return {k: v for k, v in state.items() if predicate(k)}


def state_bytes(state: AdapterState) -> int:
    """Payload bytes of a state (what sending it costs)."""
    return state_nbytes(state)


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    # A crash mid-write must not leave a truncated file under the final name.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _infer_target_modules(state: AdapterState) -> list[str]:
    suffix = ".lora_A.weight"
    return sorted({k[: -len(suffix)].rsplit(".", 1)[-1] for k in state if k.endswith(suffix)})


def save_adapter(state: AdapterState, directory: str | os.PathLike, config: dict) -> None:
    """Save a state the way PEFT's ``save_pretrained`` does, atomically per file.

    Writes ``adapter_model.safetensors`` (keys prefixed ``base_model.model.``) and
    ``adapter_config.json`` (PEFT LoraConfig fields). For a model injected with a
    ``module_filter``, pass the replaced module names as ``target_modules`` so PEFT targets
    exactly those modules.

    Args:
        state: Adapter tensors keyed as in :func:`get_adapter_state`.
        directory: Output directory, created if missing.
        config: At least ``r`` and ``lora_alpha``; ``target_modules`` is inferred from the
            keys when absent; other fields default as in PEFT. Extra keys are kept
            (PEFT ignores them with a warning).

    Raises:
        ValueError: ``r`` or ``lora_alpha`` is missing.
    """
    missing = [k for k in ("r", "lora_alpha") if k not in config]
    if missing:
        raise ValueError(f"adapter config lacks {missing}")
    full = {**_PEFT_DEFAULTS, **config}
    full.setdefault("target_modules", _infer_target_modules(state))
    if isinstance(full["target_modules"], (set, tuple)):
        full["target_modules"] = sorted(full["target_modules"])
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in state.items()}
    _atomic_write(out / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    text = json.dumps(full, indent=2, sort_keys=True)
    _atomic_write(out / CONFIG_NAME, lambda p: Path(p).write_text(text, encoding="utf-8"))


def load_adapter(directory: str | os.PathLike) -> tuple[AdapterState, dict]:
    """Load an adapter saved by :func:`save_adapter` or by PEFT's ``save_pretrained``.

    Args:
        directory: Holds ``adapter_model.safetensors`` and ``adapter_config.json``.

    Returns:
        The state with PEFT's ``base_model.model.`` prefix stripped, and the config dict.

    Raises:
        FileNotFoundError: One of the two files is missing.
    """
    src = Path(directory)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src / name} not found (not a PEFT adapter directory?)")
    raw = load_file(str(src / WEIGHTS_NAME))
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in raw.items()}
    config = json.loads((src / CONFIG_NAME).read_text(encoding="utf-8"))
    return state, config
