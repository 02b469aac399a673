"""Rules that fold the adapters into the shared frozen weight: FedEx-LoRA and FRLoRA.

Both return dense per-layer deltas through :meth:`Aggregator.base_weight_updates` (float32,
keyed ``<module>.base_layer.weight``, to be ADDED to the frozen ``nn.Linear.weight`` of shape
d_out × d_in); the simulator applies them to the shared engine, so every client gets the new
base, and counts them as down-link traffic. Both need one LoRA rank across clients.
"""

from __future__ import annotations

from typing import Any

import torch

from fedmllm import compat
from fedmllm.aggregators.base import PairedRule
from fedmllm.aggregators.functional import (
    Factors,
    LoRAPair,
    PairedRound,
    base_weight_key,
    require_equal_ranks,
)
from fedmllm.aggregators.lowrank import fedex_residual, frlora_base_delta, pair_means
from fedmllm.types import AdapterState


class FedExLoRA(PairedRule):
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
    display_name = "FedEx-LoRA"
    report_group = "Global"
    requires = frozenset({compat.SHARES, compat.LORA_PAIRS, compat.BASE_WEIGHTS})

    def combine_pair(self, pair: LoRAPair, weights: torch.Tensor) -> Factors:
        require_equal_ranks(self.name, pair.prefix + "lora_*", pair.ranks)
        w = [float(x) for x in weights]
        a, b, res = fedex_residual(pair.a, pair.b, w, self.scaling(pair.ranks[0]))
        self._base_updates[base_weight_key(pair.prefix)] = res.to(torch.float32)
        return a, b


class FRLoRA(PairedRule):
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
    display_name = "FRLoRA"
    report_group = "Global"
    requires = frozenset({compat.SHARES, compat.LORA_PAIRS, compat.BASE_WEIGHTS, compat.FRLORA})
    provides = frozenset({compat.FRLORA})

    def __init__(
        self, weighting: str = "samples", alpha: float = 16.0, use_rslora: bool = False
    ) -> None:
        super().__init__(weighting, alpha, use_rslora)
        self.init_state: AdapterState = {}

    def combine_pair(self, pair: LoRAPair, weights: torch.Tensor) -> Factors:
        a0, b0 = self.init_state[pair.a_key], self.init_state[pair.b_key]
        require_equal_ranks(self.name, pair.prefix + "lora_*", [*pair.ranks, a0.shape[0]])
        a, b = pair_means(pair.a, pair.b, weights)
        delta = frlora_base_delta(a, b, a0, b0, self.scaling(pair.ranks[0]))
        self._base_updates[base_weight_key(pair.prefix)] = delta.to(torch.float32)
        return a0.clone(), b0.clone()

    def prepare(self, rnd: PairedRound, global_state: AdapterState, round_idx: int) -> None:
        """Remember (A0, B0) of every pair the first time it is seen."""
        for a_key, b_key in rnd.pairs.values():
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
