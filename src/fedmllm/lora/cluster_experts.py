"""A layer with a warm-up LoRA, several LoRA experts and a router over them (FedLEASE).

``y = W0 x + s·B_w A_w x`` during warm-up (``active == 0``), afterwards
``y = W0 x + s·Σ_{j<M} g_j(x)·B_j A_j x`` with ``g = softmax(router(x)[:M])`` over the M
active experts. Expert slots are declared up front (``num_experts``); how many are active is
decided at run time by the server's clustering. Keys: ``warm.lora_A.weight``,
``experts.<j>.lora_A.weight`` (ordinary LoRA pairs to a server rule), ``router.weight``.
"""

from __future__ import annotations

import torch
from torch import nn

from fedmllm.lora.layers import AdapterLayer
from fedmllm.lora.pair import LowRankPair, adapter_dropout
from fedmllm.lora.rank import lora_scaling


class ClusterExpertLinear(AdapterLayer):
    """Frozen linear + warm-up LoRA + ``num_experts`` LoRA experts + a zero-initialised router.

    Args:
        base_layer: The linear layer to wrap (frozen).
        r: Rank of every pair.
        alpha: LoRA alpha (scaling ``alpha / r``, rsLoRA ``alpha / sqrt(r)``).
        num_experts: Expert slots.
        dropout: Dropout on the adapter input (the router sees the undropped input).
        use_rslora: rsLoRA scaling.

    Attributes:
        active: 0 during warm-up, else the number M of active experts.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        r: int,
        alpha: float,
        num_experts: int,
        dropout: float = 0.0,
        use_rslora: bool = False,
    ) -> None:
        super().__init__(base_layer)
        if r <= 0 or num_experts <= 0:
            raise ValueError(f"need r > 0 and num_experts > 0, got {r} and {num_experts}")
        factory = self.adapter_factory()
        self.r, self.num_experts = r, num_experts
        self.scaling = lora_scaling(alpha, r, use_rslora)
        self.lora_dropout = adapter_dropout(dropout)
        shape = (self.in_features, self.out_features, r)
        self.warm = LowRankPair(*shape, **factory)
        self.experts = nn.ModuleList(LowRankPair(*shape, **factory) for _ in range(num_experts))
        self.router = nn.Linear(self.in_features, num_experts, bias=False, **factory)
        nn.init.zeros_(self.router.weight)  # uniform over the active experts at first
        self.active = 0

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Router probabilities over the active experts, shape ``x.shape[:-1] + (M,)``."""
        logits = self.router(x.to(self.router.weight.dtype))[..., : self.active]
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the warm-up LoRA, or the router-weighted active experts."""
        result = self.base_layer(x)
        lx = self.lora_dropout(x.to(self.warm.lora_A.weight.dtype))
        if self.active == 0:
            delta = self.warm(lx)
        else:
            g = self.gates(x)
            delta = sum(g[..., j : j + 1] * self.experts[j](lx) for j in range(self.active))
        return (result + self.scaling * delta).to(result.dtype)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f"r={self.r}, experts={self.num_experts}, active={self.active}"
