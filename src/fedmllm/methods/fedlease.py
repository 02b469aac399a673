"""FedLEASE (Wang et al., 2025), client side: warm-up LoRA, then a cluster expert + router.

Each adapted layer is a :class:`~fedmllm.lora.cluster_experts.ClusterExpertLinear`. What a
client does each round is told by the server's broadcast (``aggregator=fedlease``):

- warm-up: train the local warm-up LoRA only; send nothing (in the upload round, the last
  warm-up round, send the warm-up LoRA once so the server can cluster);
- clustered: with M experts and its own cluster j, the forward mixes the M experts through
  the client's private router; the client trains expert j and the router, and sends expert j.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from fedmllm import compat
from fedmllm.lora.cluster_experts import ClusterExpertLinear
from fedmllm.methods.lora_module import LoRAMethod
from fedmllm.types import AdapterState

# Wire format of fedmllm.aggregators.fedlease (methods may not import aggregators).
UPLOAD_KEY = "fedlease.upload"
NUM_EXPERTS_KEY = "fedlease.num_experts"
CLUSTER_PREFIX = "fedlease.cluster."
EXPERT = re.compile(r"\.experts\.(\d+)\.")


class FedLEASEMethod(LoRAMethod):
    """Clustered LoRA experts with a private router.

    Args:
        max_experts: Expert slots per layer (the server's ``max_clusters`` must not exceed it).
        **kwargs: As :class:`LoRAMethod` (one rank for all clients).
    """

    OFFERS = NEEDS = frozenset({compat.FEDLEASE})

    def __init__(self, *args: Any, max_experts: int = 4, **kwargs: Any) -> None:
        self.max_experts = max_experts
        super().__init__(*args, **kwargs)
        if self.share != "all" or self.client_ranks is not None:
            raise ValueError("FedLEASE needs method.share='all' and no method.client_ranks")
        self.phase = "warmup"
        self.cluster: int | None = None
        self.num_active = 0

    def _layer_factory(self, dropout: float) -> Any:
        def factory(_name: str, linear: torch.nn.Linear) -> ClusterExpertLinear:
            return ClusterExpertLinear(
                linear, self.r, self.alpha, self.max_experts, dropout, self.use_rslora
            )

        return factory

    def expert_layers(self) -> list[ClusterExpertLinear]:
        return [m for m in self.model.modules() if isinstance(m, ClusterExpertLinear)]

    # ------------------------------------------------------------------ what travels
    def shared_keys(self, state: AdapterState) -> list[str]:
        if self.phase == "warmup":
            return []
        if self.phase == "upload":
            return sorted(k for k in state if ".warm." in k)
        return sorted(k for k in state if f".experts.{self.cluster}." in k)

    def private_keys(self, state: AdapterState) -> list[str]:
        # The warm-up LoRA stays on the client until clustering (in the upload round it is
        # also sent); afterwards only the router is private.
        if self.phase == "clustered":
            return sorted(k for k in state if k.endswith("router.weight"))
        return sorted(k for k in state if ".warm." in k or k.endswith("router.weight"))

    # ------------------------------------------------------------------ the server's word
    def begin_client(self, client_id: str, extras: AdapterState) -> None:
        super().begin_client(client_id, extras)
        if NUM_EXPERTS_KEY in extras:
            m = int(extras[NUM_EXPERTS_KEY])
            if not 1 <= m <= self.max_experts:
                raise ValueError(
                    f"FedLEASE: the server formed {m} clusters but method.max_experts is "
                    f"{self.max_experts}; set aggregator.max_clusters <= method.max_experts"
                )
            key = CLUSTER_PREFIX + client_id
            if key not in extras:
                raise KeyError(
                    f"FedLEASE: client {client_id!r} has no cluster; every client must take "
                    "part in the last warm-up round (federation.clients_per_round=null)"
                )
            self.phase, self.cluster, self.num_active = "clustered", int(extras[key]), m
        else:
            upload = bool(int(extras.get(UPLOAD_KEY, torch.tensor(0))))
            self.phase, self.cluster, self.num_active = ("upload" if upload else "warmup"), None, 0
        for layer in self.expert_layers():
            layer.active = self.num_active

    # ------------------------------------------------------------------ what trains
    def group_of(self, key: str) -> str:
        """``warm``, ``router`` or ``expert.<j>``."""
        if ".warm." in key:
            return "warm"
        if key.endswith("router.weight"):
            return "router"
        match = EXPERT.search(key)
        return f"expert.{match.group(1)}" if match else "other"

    def trainable_groups(
        self, step: int, num_steps: int, round_idx: int, num_rounds: int
    ) -> frozenset[str]:
        """The warm-up LoRA until clustering; then the own cluster's expert and the router."""
        if self.phase != "clustered":
            return frozenset({"warm"})
        return frozenset({f"expert.{self.cluster}", "router"})
