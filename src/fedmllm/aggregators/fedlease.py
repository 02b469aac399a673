"""FedLEASE server (Wang et al., 2025): warm-up, clustering, one LoRA expert per cluster.

Rounds ``0 .. warmup_rounds − 1`` are local-only: nothing is averaged, and clients send
nothing until the last warm-up round, when each uploads its warm-up LoRA
(``<layer>.warm.lora_{A,B}.weight``). The server then clusters the clients by the cosine
distance of their B matrices (average-linkage agglomerative; the count in
``2..max_clusters`` with the best silhouette), and initialises expert j of every layer
(``<layer>.experts.<j>.lora_{A,B}.weight``) as the weighted mean of cluster j's warm-up LoRAs.
Afterwards a client trains its own cluster's expert (plus a private router over all
experts) and sends only that expert; the server averages each expert within its cluster.

What travels down is told by :meth:`broadcast_extras` (the wire format below): before
clustering, whether this round is the upload round; after, the number of experts and every
client's cluster. Assignment and counts are checkpointed with :meth:`state_dict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedmllm import compat
from fedmllm.aggregators.base import Aggregator
from fedmllm.aggregators.clustering import choose_clusters, cosine_distances
from fedmllm.aggregators.functional import client_weights, weighted_mean
from fedmllm.types import AdapterState, ClientUpdate

UPLOAD_KEY = "fedlease.upload"
NUM_EXPERTS_KEY = "fedlease.num_experts"
CLUSTER_PREFIX = "fedlease.cluster."
WARM = ".warm."


def expert_key(warm_key: str, j: int) -> str:
    """``a.b.warm.lora_A.weight`` → ``a.b.experts.<j>.lora_A.weight``."""
    if WARM not in warm_key:
        raise KeyError(f"{warm_key!r} is not a FedLEASE warm-up LoRA key (no {WARM!r})")
    return warm_key.replace(WARM, f".experts.{j}.", 1)


class FedLEASE(Aggregator):
    """Clustered LoRA experts; pair with ``method=fedlease``.

    Args:
        warmup_rounds: Local-only rounds before clustering (at least 1: the last one uploads).
        max_clusters: Largest cluster count tried (at most the method's ``max_experts``).
        weighting: ``"samples"`` or ``"uniform"``, for expert initialisation and averaging.
    """

    name = "fedlease"
    display_name = "FedLEASE"
    report_group = "Personalised"
    requires = frozenset({compat.FEDLEASE})
    provides = frozenset({compat.FEDLEASE})
    hyperparameters = ("warmup_rounds",)

    def __init__(
        self, warmup_rounds: int = 2, max_clusters: int = 4, weighting: str = "samples"
    ) -> None:
        super().__init__(weighting)
        if warmup_rounds < 1 or max_clusters < 1:
            raise ValueError(
                f"FedLEASE needs warmup_rounds >= 1 and max_clusters >= 1, got "
                f"{warmup_rounds} and {max_clusters}"
            )
        self.warmup_rounds, self.max_clusters = warmup_rounds, max_clusters
        self.assignment: dict[str, int] = {}
        self.num_clusters = 0
        self.next_round = 0
        self.silhouettes: dict[int, float] = {}

    def broadcast_extras(self) -> AdapterState:
        if self.num_clusters == 0:
            upload = self.next_round >= self.warmup_rounds - 1
            return {UPLOAD_KEY: torch.tensor(int(upload))}
        extras = {NUM_EXPERTS_KEY: torch.tensor(self.num_clusters)}
        extras.update({CLUSTER_PREFIX + c: torch.tensor(j) for c, j in self.assignment.items()})
        return extras

    def aggregate(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        # All of aggregate, not combine: the round counter advances on an empty round too.
        self.next_round = round_idx + 1
        if self.num_clusters == 0:
            if round_idx < self.warmup_rounds - 1 or not updates:
                return dict(global_state)
            return self._cluster(updates)
        return self._average_within_clusters(global_state, updates)

    def _cluster(self, updates: Sequence[ClientUpdate]) -> AdapterState:
        b_keys = sorted(k for k in updates[0].state if WARM in k and k.endswith("lora_B.weight"))
        if not b_keys:
            raise KeyError(
                "FedLEASE: the upload round carried no warm-up LoRA; use method=fedlease"
            )
        dist = cosine_distances([[u.state[k] for k in b_keys] for u in updates])
        labels, self.silhouettes = choose_clusters(dist, self.max_clusters)
        self.assignment = {u.client_id: j for u, j in zip(updates, labels, strict=True)}
        self.num_clusters = max(labels) + 1
        experts: AdapterState = {}
        for j in range(self.num_clusters):
            members = [u for u in updates if self.assignment[u.client_id] == j]
            weights = client_weights([u.num_examples for u in members], self.weighting)
            mean = weighted_mean([u.state for u in members], weights)
            experts.update({expert_key(k, j): v for k, v in mean.items()})
        return experts

    def _average_within_clusters(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate]
    ) -> AdapterState:
        out = dict(global_state)
        unknown = [u.client_id for u in updates if u.client_id not in self.assignment]
        if unknown:
            raise KeyError(f"FedLEASE: clients {unknown} were not clustered")
        for j in range(self.num_clusters):
            members = [u for u in updates if self.assignment[u.client_id] == j]
            if not members:
                continue  # nobody of this cluster took part: its expert stays as it was
            tag = f".experts.{j}."
            for u in members:
                foreign = [k for k in u.state if tag not in k]
                if foreign:
                    raise KeyError(
                        f"FedLEASE: client {u.client_id} (cluster {j}) sent {foreign[:2]}"
                    )
            weights = client_weights([u.num_examples for u in members], self.weighting)
            out.update(weighted_mean([u.state for u in members], weights))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "assignment": dict(self.assignment),
            "num_clusters": self.num_clusters,
            "next_round": self.next_round,
            "silhouettes": dict(self.silhouettes),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        known = {"assignment", "num_clusters", "next_round", "silhouettes"}
        if set(state) != known:
            raise KeyError(f"FedLEASE state must have keys {sorted(known)}, got {sorted(state)}")
        self.assignment = dict(state["assignment"])
        self.num_clusters = int(state["num_clusters"])
        self.next_round = int(state["next_round"])
        self.silhouettes = dict(state["silhouettes"])

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "num_clusters": self.num_clusters,
            "assignment": dict(self.assignment),
            "silhouettes": {str(k): v for k, v in self.silhouettes.items()},
        }
