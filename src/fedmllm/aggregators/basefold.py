"""Rules that fold the adapters into the shared frozen weight: FedEx-LoRA and FRLoRA.

Both return dense per-layer deltas through :meth:`Aggregator.base_weight_updates` (float32,
keyed ``<module>.base_layer.weight``, to be ADDED to the frozen ``nn.Linear.weight`` of shape
d_out × d_in); the simulator applies them to the shared engine, so every client gets the new
base, and counts them as down-link traffic. Both need one LoRA rank across clients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedmllm.aggregators.base import ScaledRule
from fedmllm.aggregators.functional import (
    base_weight_key,
    pair_ranks,
    paired_round,
    require_equal_ranks,
)
from fedmllm.aggregators.lowrank import fedex_residual, frlora_base_delta, pair_means
from fedmllm.types import AdapterState, ClientUpdate


class FedExLoRA(ScaledRule):
    """FedEx-LoRA: ``Ā``, ``B̄`` go back as the global adapter; ``W0 += s·(mean(B_k A_k) − B̄Ā)``.

    The dense residual of every pair is exposed by :meth:`base_weight_updates` (float32,
    keyed ``<module>.base_layer.weight``) for the simulator to add to the shared engine's
    frozen weights and to count as down-link traffic. All clients must share one rank.

    Args:
        weighting: ``"samples"`` or ``"uniform"`` (the mean in both terms of the residual).
        alpha: LoRA alpha of the clients.
        use_rslora: Whether the clients use ``alpha / sqrt(r)``.
    """

    name = "fedex"

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        rnd = paired_round(updates, self.weighting)
        states, weights, keys, pairs, out = rnd.states, rnd.weights, rnd.keys, rnd.pairs, rnd.out
        w = [float(x) for x in weights]
        for prefix, (a_key, b_key) in pairs.items():
            ranks = pair_ranks(states, a_key, b_key)
            require_equal_ranks(self.name, prefix + "lora_*", ranks)
            a, b, res = fedex_residual(
                [s[a_key] for s in states], [s[b_key] for s in states], w, self.scaling(ranks[0])
            )
            out[a_key], out[b_key] = a.to(states[0][a_key].dtype), b.to(states[0][b_key].dtype)
            self._base_updates[base_weight_key(prefix)] = res.to(torch.float32)
        return {k: out[k] for k in keys}


class FRLoRA(ScaledRule):
    """FRLoRA: ``W_base += s(B̄Ā − B0A0)``; the global LoRA returned is always (A0, B0).

    (A0, B0) is captured from the first global state this rule sees — the method's PiSSA
    initialisation — and checkpointed. The dense base deltas are exposed by
    :meth:`base_weight_updates` (float32, ``<module>.base_layer.weight``); keys outside a LoRA
    pair get the weighted mean. All clients must share the rank of (A0, B0).

    Args:
        weighting: ``"samples"`` or ``"uniform"``.
        alpha: LoRA alpha of the clients.
        use_rslora: Whether the clients use ``alpha / sqrt(r)``.
    """

    name = "frlora"

    def __init__(
        self, weighting: str = "samples", alpha: float = 16.0, use_rslora: bool = False
    ) -> None:
        super().__init__(weighting, alpha, use_rslora)
        self.init_state: AdapterState = {}

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        rnd = paired_round(updates, self.weighting)
        states, weights, keys, pairs, out = rnd.states, rnd.weights, rnd.keys, rnd.pairs, rnd.out
        self._capture_init(global_state, pairs)
        for prefix, (a_key, b_key) in pairs.items():
            ranks = pair_ranks(states, a_key, b_key)
            a0, b0 = self.init_state[a_key], self.init_state[b_key]
            require_equal_ranks(self.name, prefix + "lora_*", [*ranks, a0.shape[0]])
            a, b = pair_means([s[a_key] for s in states], [s[b_key] for s in states], weights)
            delta = frlora_base_delta(a, b, a0, b0, self.scaling(ranks[0]))
            self._base_updates[base_weight_key(prefix)] = delta.to(torch.float32)
            out[a_key], out[b_key] = a0.clone(), b0.clone()
        return {k: out[k] for k in keys}

    def _capture_init(self, global_state: AdapterState, pairs: dict[str, tuple[str, str]]) -> None:
        """Remember (A0, B0) of every pair the first time it is seen."""
        for a_key, b_key in pairs.values():
            if a_key in self.init_state:
                continue
            if a_key not in global_state or b_key not in global_state:
                raise KeyError(
                    f"frlora restarts every round from the initial adapter (A0, B0), but the "
                    f"global state handed to its first aggregate() lacks {a_key!r}/{b_key!r}"
                )
            self.init_state[a_key] = global_state[a_key].detach().clone()
            self.init_state[b_key] = global_state[b_key].detach().clone()

    def state_dict(self) -> dict[str, Any]:
        return {"init_state": {k: t.clone() for k, t in self.init_state.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self.init_state = {}
            return
        if set(state) != {"init_state"}:
            raise KeyError(f"FRLoRA state needs the key 'init_state', got {sorted(state)}")
        self.init_state = {k: t.clone() for k, t in state["init_state"].items()}
