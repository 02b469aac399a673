"""A layer with a warm-up LoRA, several LoRA experts and a router over them (FedLEASE).

``y = W0 x + s·B_w A_w x`` during warm-up (``active == 0``), afterwards
``y = W0 x + s·Σ_{j<M} g_j(x)·B_j A_j x`` with ``g = softmax(router(x)[:M])`` over the M
active experts. Expert slots are declared up front (``num_experts``); how many are active is
decided at run time by the server's clustering. Keys: ``warm.lora_A.weight``,
``experts.<j>.lora_A.weight`` (ordinary LoRA pairs to a server rule), ``router.weight``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedmllm.lora.layers import AdapterLayer, default_adapter_dtype


class LoRAPair(nn.Module):
    """``B(A(x))`` with A Kaiming-uniform and B zero, as a LoRA layer's pair."""

    def __init__(self, d_in: int, d_out: int, r: int, **factory) -> None:
        super().__init__()
        self.lora_A = nn.Linear(d_in, r, bias=False, **factory)
        self.lora_B = nn.Linear(r, d_out, bias=False, **factory)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(x))


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
        w = base_layer.weight
        factory = {"device": w.device, "dtype": default_adapter_dtype(w.dtype)}
        self.r, self.num_experts = r, num_experts
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.lora_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.warm = LoRAPair(self.in_features, self.out_features, r, **factory)
        self.experts = nn.ModuleList(
            LoRAPair(self.in_features, self.out_features, r, **factory) for _ in range(num_experts)
        )
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
