"""LoRA baselines that share one factor: FFA-LoRA (B only) and FedSA-LoRA (A only).

FFA-LoRA (Sun et al., 2024) freezes every A at an initialisation all clients derive from one
shared seed and trains and averages only B; since A is common, ``mean(B_k)·A0 = mean(B_k A0)``
is exact. FedSA-LoRA (Guo et al., 2025) trains both factors but shares only A; B never leaves
the client. Either way half of the LoRA tensors travel, in both directions.
"""

from __future__ import annotations

from typing import Any

import torch

from fedmllm.methods.lora_module import FACTOR_A, FACTOR_B, LoRAMethod

LONE_FACTOR_RANKS = (
    "{name} sends a lone LoRA factor, and the server rules zero-pad only A/B pairs: "
    "method.client_ranks is not supported"
)


def shared_seed_init(layers: list[tuple[str, Any]], seed: int) -> None:
    """Re-initialise every layer's A (Kaiming uniform, B zero) from ``seed`` and the layer index.

    Any client that knows ``seed`` and the layer order rebuilds the same A without receiving it.
    """
    for i, (_, layer) in enumerate(layers):
        g = torch.Generator(device=layer.lora_A.weight.device).manual_seed(seed * 100_003 + i)
        layer.reset_lora_parameters(generator=g)


class FFALoRAMethod(LoRAMethod):
    """FFA-LoRA: A frozen at a shared-seed init, B trained and averaged.

    Args:
        a_seed: The seed every client derives its frozen A from.
        **kwargs: As :class:`LoRAMethod` (``share`` must stay ``"all"``).
    """

    def __init__(self, *args: Any, a_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.share != "all":
            raise ValueError("FFA-LoRA shares B: method.share must be 'all'")
        if self.client_ranks is not None:
            raise ValueError(LONE_FACTOR_RANKS.format(name="FFA-LoRA"))
        self.a_seed = a_seed
        layers = self.lora_layers()
        shared_seed_init(layers, a_seed)
        # A is neither sent nor kept per client: it is the same frozen tensor everywhere.
        for _, layer in layers:
            layer.lora_A.weight.requires_grad_(False)
        self.shared_groups = frozenset({FACTOR_B})


class FedSALoRAMethod(LoRAMethod):
    """FedSA-LoRA: A shared and averaged; B trained but private.

    Args:
        **kwargs: As :class:`LoRAMethod` (``share`` must stay ``"all"``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.share != "all":
            raise ValueError("FedSA-LoRA shares A: method.share must be 'all'")
        if self.client_ranks is not None:
            raise ValueError(LONE_FACTOR_RANKS.format(name="FedSA-LoRA"))
        self.shared_groups = frozenset({FACTOR_A})
