"""The server half of a round: one implementation for the Simulator and the Flower ServerApp.

:class:`RoundServer` holds the global shared state and the server rule, and answers the
questions every round asks: which clients train (seeded sampling), what each one receives
(the global state at the client's LoRA rank, via ``aggregator.for_client``, plus the rule's
broadcast extras), and what the new global state is once updates are in (``aggregate``,
then the rule's dense base-weight deltas, if any). The Simulator feeds it updates from its
in-process clients; the Flower strategy feeds it the replies that passed its checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from fedmllm.aggregators.base import Aggregator
from fedmllm.federation.config import FederationConfig
from fedmllm.federation.sampling import sample_clients
from fedmllm.federation.wire import from_wire, to_wire, wire_dtype
from fedmllm.protocol import FederatedMethod
from fedmllm.types import AdapterState, ClientUpdate


class RoundServer:
    """Global state, client sampling, per-client payloads and aggregation.

    Args:
        aggregator: The server rule.
        global_state: The initial global shared state.
        client_ids: Every training client, in the run's fixed order.
        seed: Run seed (sampling).
        clients_per_round: ``federation.clients_per_round``.
        rank_of: The method's ``client_rank`` hook (per-client LoRA ranks).
        wire: The dtype floating tensors travel in (``federation.wire_dtype``); what arrives
            is decoded to float32 before the rule aggregates it.
    """

    def __init__(
        self,
        aggregator: Aggregator,
        global_state: AdapterState,
        client_ids: Sequence[str],
        seed: int,
        clients_per_round: int | float | None,
        rank_of: Callable[[str], int | None] | None = None,
        wire: torch.dtype = torch.float32,
    ) -> None:
        self.aggregator = aggregator
        self.client_ids = list(client_ids)
        self.seed = seed
        self.clients_per_round = clients_per_round
        self.rank_of = rank_of
        self.wire = wire
        self._views: dict[int | None, AdapterState] = {}
        self.global_state = global_state

    @property
    def global_state(self) -> AdapterState:
        """The server's shared state (at r_max when clients have different ranks)."""
        return self._global_state

    @global_state.setter
    def global_state(self, state: AdapterState) -> None:
        self._global_state = state
        self._views = {}  # per-rank views of the old state are stale

    def sample(self, round_idx: int) -> list[str]:
        """The clients that train round ``round_idx``, in the run's client order."""
        return sample_clients(self.client_ids, round_idx, self.seed, self.clients_per_round)

    def rank(self, client_id: str) -> int | None:
        """The client's LoRA rank, or None when every client uses the engine's rank."""
        return self.rank_of(client_id) if self.rank_of is not None else None

    def received(self, client_id: str) -> AdapterState:
        """The global state as ``client_id`` receives it: ``aggregator.for_client`` at its
        rank, at the wire dtype."""
        rank = self.rank(client_id)
        if rank not in self._views:
            view = (
                self.global_state
                if rank is None
                else self.aggregator.for_client(self.global_state, rank)
            )
            self._views[rank] = to_wire(view, self.wire)
        return self._views[rank]

    def extras(self) -> AdapterState:
        """What the rule broadcasts beside the global state (e.g. SCAFFOLD's c), on the wire."""
        return to_wire(self.aggregator.broadcast_extras(), self.wire)

    def aggregate(self, updates: Sequence[ClientUpdate], round_idx: int) -> AdapterState:
        """Fold this round's updates into the global state.

        Returns:
            The dense base-weight deltas every client must add to its frozen weights (FedEx's
            residual, FRLoRA's refresh); empty for most rules.
        """
        arrived = [
            replace(u, state=from_wire(u.state), extras=from_wire(u.extras)) for u in updates
        ]
        self.global_state = self.aggregator.aggregate(self.global_state, arrived, round_idx)
        return self.aggregator.base_weight_updates()

    def round_stats(self) -> dict[str, float]:
        """The rule's scalars about the last aggregation (logged as ``server/<name>``)."""
        return {k: float(v) for k, v in self.aggregator.round_stats().items()}

    def describe(self) -> dict[str, Any]:
        """The rule's plain facts for ``results.json``."""
        return self.aggregator.describe()


def build_round_server(
    method: FederatedMethod,
    aggregator: Aggregator,
    initial: AdapterState,
    client_ids: Sequence[str],
    config: FederationConfig,
) -> RoundServer:
    """The server half of ``method``'s federation, as the Simulator and the ServerApp build it.

    Args:
        method: Says which tensors are shared and each client's LoRA rank.
        aggregator: The server rule.
        initial: The method's initial adapter state; its shared part is the first global state.
        client_ids: Every training client, in the run's fixed order.
        config: The run's seed and ``clients_per_round``.
    """
    return RoundServer(
        aggregator,
        {k: initial[k] for k in method.shared_keys(initial)},
        list(client_ids),
        config.seed,
        config.clients_per_round,
        method.client_rank,
        wire_dtype(config.wire_dtype),
    )
