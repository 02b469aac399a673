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
from fedmllm.aggregators.functional import client_weights
from fedmllm.federation.config import FederationConfig
from fedmllm.federation.sampling import sample_clients
from fedmllm.federation.wire import from_wire, to_wire, wire_dtype
from fedmllm.privacy.accountant import client_dp_epsilon, client_dp_noise
from fedmllm.privacy.client_dp import add_noise, central_noise_std, clip_update, noise_generator
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
        privacy: The run's ``PrivacyConfig``; with ``dp_client`` and ``noise_at=server`` the
            server clips every arrived update and adds central DP noise of std ``dp_noise``·S.
        dp_noise: Client-level DP's σ.
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
        privacy: Any = None,
        dp_noise: float = 0.0,
    ) -> None:
        self.aggregator = aggregator
        self.client_ids = list(client_ids)
        self.seed = seed
        self.clients_per_round = clients_per_round
        self.rank_of = rank_of
        self.wire = wire
        self._views: dict[int | None, AdapterState] = {}
        self.global_state = global_state
        self.privacy, self.dp_noise = privacy, float(dp_noise)
        self._dp_rounds = 0

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
        arrived = self.central_dp(arrived, round_idx)
        self.global_state = self.aggregator.aggregate(self.global_state, arrived, round_idx)
        return self.aggregator.base_weight_updates()

    @property
    def central_dp_on(self) -> bool:
        """Whether the server adds client-level DP noise (``privacy=dp_client``, at the server)."""
        p = self.privacy
        return p is not None and p.mode == "dp_client" and p.noise_at == "server"

    @property
    def client_sampling_rate(self) -> float:
        """Clients per round / clients: the client-level accountant's q."""
        return len(self.sample(0)) / max(1, len(self.client_ids))

    def central_dp(self, updates: list[ClientUpdate], round_idx: int) -> list[ClientUpdate]:
        """Central client-level DP: clip each decoded update against what its client received
        (enforcing S whatever the client did), then add Gaussian noise to each so that the
        rule's weighted mean carries N(0, (σ·S·max_k w_k)²); seeded by (seed, round)."""
        if not self.central_dp_on or not updates:
            return updates
        p = self.privacy
        weighting = getattr(self.aggregator, "weighting", "uniform")
        weights = client_weights([u.num_examples for u in updates], weighting).tolist()
        std = central_noise_std(p.clip, self.dp_noise, weights)
        gen = noise_generator(self.seed * 1_000_003 + round_idx)
        out = []
        for u in updates:
            reference = from_wire(self.received(u.client_id))
            clipped, _ = clip_update(u.state, reference, p.clip)
            out.append(replace(u, state=add_noise(clipped, std, gen)))
        self._dp_rounds = round_idx + 1
        return out

    def round_stats(self) -> dict[str, float]:
        """The rule's scalars about the last aggregation (logged as ``server/<name>``), and
        central DP's ε so far (``dp_epsilon``)."""
        stats = {k: float(v) for k, v in self.aggregator.round_stats().items()}
        if self.central_dp_on:
            stats["dp_epsilon"] = client_dp_epsilon(
                self.dp_noise,
                "server",
                self.client_sampling_rate,
                self._dp_rounds,
                self.privacy.delta,
            )
        return stats

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
    server = RoundServer(
        aggregator,
        {k: initial[k] for k in method.shared_keys(initial)},
        list(client_ids),
        config.seed,
        config.clients_per_round,
        method.client_rank,
        wire_dtype(config.wire_dtype),
        config.privacy,
    )
    p = config.privacy
    if server.central_dp_on:
        server.dp_noise = client_dp_noise(
            p.target_epsilon,
            p.noise_multiplier,
            "server",
            server.client_sampling_rate,
            config.rounds,
            p.delta,
        )
    return server
