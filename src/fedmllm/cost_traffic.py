"""Shape-only traffic accounting of one method and server rule (``python -m fedmllm.cost``).

The method decides what a client sends (``shared_keys``, ``client_extras_shapes``) and needs
(``received_keys``) from its adapter state, which on a meta-device model has full shapes and
no data. The server rule's own traffic (broadcast extras, dense base-weight updates) is found
by running the rule once on a *miniature* state: the same keys with every dimension capped at
:data:`MINI_DIM` (ranks up to that size are kept), filled with small random numbers. The keys
it returns are then sized from the full-size state, the clients' extras or the model's own
parameters (``<module>.base_layer.weight``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fedmllm.lora.modality_expert import expert_modality
from fedmllm.lora.state import adapter_parameter_names
from fedmllm.types import AdapterState, ClientUpdate

MINI_DIM = 16


@dataclass
class Traffic:
    """Full-size wire bytes and parameter counts of one method + server rule.

    Attributes:
        up: Key -> (params, bytes) a sampled client sends each round (shared + extras).
        down: Key -> (params, bytes) it receives from the second round on.
        down_first: The same in the first round (before any broadcast state exists).
        base: Key -> (params, bytes) every training client receives after each aggregation.
        note: How the figures were taken (e.g. one modality per client).
    """

    up: dict[str, tuple[int, int]]
    down: dict[str, tuple[int, int]]
    down_first: dict[str, tuple[int, int]]
    base: dict[str, tuple[int, int]]
    note: str = ""

    @staticmethod
    def _sum(part: dict[str, tuple[int, int]], index: int) -> int:
        return sum(v[index] for v in part.values())

    def report(self, clients: int, sampled: int, rounds: int) -> dict[str, Any]:
        """Per client, per round and whole-run traffic (bytes and parameters)."""
        up, down = self._sum(self.up, 1), self._sum(self.down, 1)
        base = clients * self._sum(self.base, 1)
        first_down = sampled * self._sum(self.down_first, 1) + base
        later_down = sampled * down + base
        run_down = first_down + (rounds - 1) * later_down
        return {
            "per_client": {
                "up_params": self._sum(self.up, 0),
                "down_params": self._sum(self.down, 0) + self._sum(self.base, 0),
                "up_bytes": up,
                "down_bytes": down + self._sum(self.base, 1),
                "base_update_bytes": self._sum(self.base, 1),
            },
            "per_round": {
                "up_bytes": sampled * up,
                "down_bytes": later_down,
                "total_bytes": sampled * up + later_down,
            },
            "run": {
                "up_bytes": rounds * sampled * up,
                "down_bytes": run_down,
                "total_bytes": rounds * sampled * up + run_down,
            },
            "note": self.note,
        }


def full_ft_traffic(
    params: int, wire: torch.dtype, clients: int, sampled: int, rounds: int
) -> dict[str, int]:
    """Full fine-tuning of ``params`` weights: every sampled client sends and receives them all."""
    per_client = params * wire.itemsize
    return {
        "params": params,
        "per_client_bytes": 2 * per_client,
        "per_round_bytes": 2 * sampled * per_client,
        "run_bytes": 2 * sampled * per_client * rounds,
    }


def _wire_size(numel: int, dtype: torch.dtype, wire: torch.dtype) -> int:
    return numel * (wire.itemsize if dtype.is_floating_point else dtype.itemsize)


def _sized(
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]],
    keys: Iterable[str],
    wire: torch.dtype,
    part: str,
) -> dict[str, tuple[int, int]]:
    """``part/key -> (params, wire bytes)``; the part keeps e.g. a tensor and its Δc apart."""
    out = {}
    for k in keys:
        shape, dtype = shapes[k]
        numel = int(torch.Size(shape).numel())
        out[f"{part}/{k}"] = (numel, _wire_size(numel, dtype, wire))
    return out


def miniature(
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]], seed: int = 0
) -> AdapterState:
    """Random float32 tensors with the same keys, every dimension capped at :data:`MINI_DIM`."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, (shape, dtype) in shapes.items():
        small = tuple(min(d, MINI_DIM) for d in shape)
        if dtype.is_floating_point:
            out[k] = 0.1 * torch.randn(small, generator=g)
        else:
            out[k] = torch.ones(small, dtype=dtype)
    return out


def _server_keys(
    aggregator: Any, shared: AdapterState, extras: AdapterState, num_clients: int
) -> tuple[AdapterState, AdapterState, AdapterState]:
    """``(broadcast before, broadcast after, base updates)`` of one miniature aggregation."""
    if getattr(aggregator, "num_clients", 0) is None:
        aggregator.num_clients = num_clients
    before = aggregator.broadcast_extras()
    # What a modality-expert client reports beside its experts (the expert-aware rule's weights).
    modalities = sorted({m for k in shared if (m := expert_modality(k)) is not None})
    metrics = {f"modality_frac/{m}": 1.0 / len(modalities) for m in modalities}
    updates = [
        ClientUpdate(str(i), {k: v * (i + 1) for k, v in shared.items()}, 10 + i, metrics, extras)
        for i in range(2)
    ]
    aggregator.aggregate(shared, updates, 0)
    return before, aggregator.broadcast_extras(), aggregator.base_weight_updates()


def _one_modality(keys: list[str], modalities: Sequence[str]) -> tuple[list[str], str]:
    """Keys a client holding one of ``modalities`` uses (modality experts), and a note."""
    present = [m for m in modalities if any(expert_modality(k) == m for k in keys)]
    if not present:
        return keys, ""
    first = present[0]
    kept = [k for k in keys if expert_modality(k) not in set(present) - {first}]
    note = f"modality experts: a client holding one modality ({first}) of {present}"
    return kept, note


def count_traffic(
    method: Any, aggregator: Any, model: Any, num_clients: int, wire: torch.dtype
) -> Traffic:
    """Full-size traffic of ``method`` and ``aggregator`` over ``model`` (meta device).

    Args:
        method: The instantiated method (adapters injected into ``model``).
        aggregator: The instantiated server rule (it runs once on a miniature state).
        model: The model the method adapted.
        num_clients: Training clients (rules that need N, such as SCAFFOLD's).
        wire: Dtype floating tensors travel in.

    Returns:
        The :class:`Traffic`.
    """
    params = dict(model.named_parameters())
    # Adapter tensors (frozen ones too: FFA's A) and whatever else trains (full fine-tuning).
    state = {n: params[n] for n in adapter_parameter_names(model)}
    state.update(method.trainable_parameters())
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    # Modality-expert methods name their modalities; a client holds one (X-FLoRA's setting).
    modalities = [str(m) for m in getattr(method, "modalities", None) or ()]
    shared, note = _one_modality(method.shared_keys(state), modalities)
    received, _ = _one_modality(method.received_keys(list(shared)), modalities)
    extra_shapes = dict(method.client_extras_shapes({k: state[k] for k in shared}))
    extras = {k: (tuple(s), torch.float32) for k, s in extra_shapes.items()}
    before, after, base = _server_keys(
        aggregator, miniature({k: shapes[k] for k in shared}), miniature(extras, 1), num_clients
    )
    known = {k: (tuple(p.shape), p.dtype) for k, p in params.items()} | shapes | extras
    for k, v in {**before, **after}.items():
        if k not in known and MINI_DIM in v.shape:
            raise ValueError(f"cannot size the server's broadcast tensor {k!r} at full size")
        known.setdefault(k, (tuple(v.shape), v.dtype))  # a rule's own small tensor (counts)
    state_down = _sized(shapes, received, wire, "state")
    return Traffic(
        up={**_sized(shapes, shared, wire, "state"), **_sized(extras, extras, wire, "extras")},
        down={**state_down, **_sized(known, after, wire, "broadcast")},
        down_first={**state_down, **_sized(known, before, wire, "broadcast")},
        base=_sized(known, base, wire, "base"),
        note=note,
    )
