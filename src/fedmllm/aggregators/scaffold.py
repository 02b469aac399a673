"""SCAFFOLD server (Karimireddy et al., 2020): FedAvg of the models plus the control variate.

``x = Σ w_k y_k`` over the round's updates (the global learning rate is 1), and
``c ← c + (1/N)·Σ_{k∈S} Δc_k`` with N the number of clients in the federation (not the
round's sample). ``c`` starts at zero, travels down as :meth:`broadcast_extras` and is
checkpointed with :meth:`state_dict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedmllm import compat
from fedmllm.aggregators.base import Aggregator
from fedmllm.aggregators.functional import client_weights, weighted_mean
from fedmllm.types import AdapterState, ClientUpdate


def control_update(
    c: AdapterState, deltas: Sequence[AdapterState], num_clients: int
) -> AdapterState:
    """``c + (1/N)·Σ_k Δc_k`` key-wise (float64 accumulation); missing ``c`` keys count as zero."""
    if num_clients <= 0:
        raise ValueError(f"num_clients must be positive, got {num_clients}")
    keys = set(deltas[0]) if deltas else set()
    for d in deltas[1:]:
        if set(d) != keys:
            raise KeyError("clients sent control-variate deltas with different keys")
    out = dict(c)
    for key in sorted(keys):
        acc = torch.zeros(deltas[0][key].shape, dtype=torch.float64)
        for d in deltas:
            acc += d[key].to(torch.float64)
        base = c[key].to(torch.float64) if key in c else torch.zeros_like(acc)
        out[key] = (base + acc / num_clients).to(torch.float32)
    return out


class Scaffold(Aggregator):
    """SCAFFOLD's server rule; pair with ``method=scaffold``.

    Args:
        num_clients: N, the federation's client count (the composition root fills it in
            from the benchmark when left ``None``).
        weighting: ``"samples"`` or ``"uniform"`` for the model average.
    """

    name = "scaffold"
    display_name = "Scaffold"
    report_group = "Global"
    requires = frozenset({compat.SHARES, compat.SCAFFOLD})
    provides = frozenset({compat.SCAFFOLD})
    hyperparameters = ("num_clients",)

    def __init__(self, num_clients: int | None = None, weighting: str = "samples") -> None:
        super().__init__(weighting)
        self.num_clients = num_clients
        self.c: AdapterState = {}

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        if self.num_clients is None:
            raise ValueError("Scaffold.num_clients is not set (the federation's client count)")
        missing = [u.client_id for u in updates if not u.extras]
        if missing:
            raise ValueError(
                f"SCAFFOLD: clients {missing} sent no control-variate delta; use method=scaffold"
            )
        weights = client_weights([u.num_examples for u in updates], self.weighting)
        new_state = weighted_mean([u.state for u in updates], weights)
        self.c = control_update(self.c, [u.extras for u in updates], self.num_clients)
        return new_state

    def broadcast_extras(self) -> AdapterState:
        return dict(self.c)

    def state_dict(self) -> dict[str, Any]:
        return {"c": {k: v.clone() for k, v in self.c.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - {"c"}
        if unknown:
            raise KeyError(f"Scaffold state has unknown keys {sorted(unknown)}")
        self.c = {k: v.clone() for k, v in state.get("c", {}).items()}
