"""Core types shared by every room: adapter state and a client's reply to the server.

This module depends on torch only, so that aggregators, federation and methods can all use
it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

AdapterState = dict[str, torch.Tensor]
"""Adapter tensors keyed PEFT-style without the adapter name, e.g.
``model.language_model.layers.0.self_attn.q_proj.lora_A.weight``."""


@dataclass
class ClientUpdate:
    """What one client sends to the server after its local update.

    Attributes:
        client_id: The sender.
        state: Only the shared keys of the client's adapter state.
        num_examples: Training examples seen by the client (its dataset size), used as weight.
        metrics: Plain scalars from local training (loss, steps, ...).
        extras: Extra tensors a rule needs (e.g. SCAFFOLD's control-variate delta).
    """

    client_id: str
    state: AdapterState
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    extras: AdapterState = field(default_factory=dict)


def state_nbytes(state: AdapterState) -> int:
    """Bytes on the wire of a state: the sum of its tensors' payloads."""
    return sum(t.numel() * t.element_size() for t in state.values())
