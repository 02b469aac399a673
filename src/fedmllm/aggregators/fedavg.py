"""FedAvg (FedIT for LoRA): average A and B separately, weighted by n_k or uniformly.

Clients of different LoRA ranks are combined by zero-padding each pair to the round's largest
rank (the "LoRA (zero-padding)" baseline of UniFLoW, appendix E.4); a client of rank r then
loads the first r components (:meth:`Aggregator.for_client`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fedmllm import compat
from fedmllm.aggregators.base import Aggregator
from fedmllm.aggregators.functional import client_weights, zero_padded_mean
from fedmllm.types import AdapterState, ClientUpdate


class FedAvg(Aggregator):
    """``x = Σ_k w_k x_k`` over each shared tensor; an empty round keeps the global state.

    LoRA pairs of mixed ranks are zero-padded to the largest rank of the round; other tensors
    must agree in shape.
    """

    name = "fedavg"
    display_name = "FedAvg"
    report_group = "Global"
    provides = frozenset({compat.MIXED_RANKS, compat.SUM_ONLY})

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        weights = client_weights([u.num_examples for u in updates], self.weighting)
        return zero_padded_mean([u.state for u in updates], weights)


class NoAggregation(Aggregator):
    """Standalone training: the server keeps whatever it had and ignores the clients."""

    name = "none"
    display_name = "Standalone"
    report_group = "Reference"
    requires = frozenset({compat.PRIVATE_ONLY})
    provides = frozenset({compat.MIXED_RANKS})

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        return dict(global_state)
