"""FRLoRA, client side: PiSSA-style initialisation from the SVD of the frozen weight.

Once, before the federation starts: ``W0 = U S Vᵀ``; with the top-r triplets
``B0 = U_r S_r^{1/2} / √s`` and ``A0 = S_r^{1/2} V_rᵀ / √s`` (so ``s·B0A0 = U_r S_r V_rᵀ``,
the best rank-r approximation of W0), and the base becomes ``W_base = W0 − s·B0A0``. The
layer's output is unchanged at the start. Each round the server (``aggregator=frlora``)
averages A and B, folds ``s(B̄Ā − B0A0)`` into the base of every client through
``Aggregator.base_weight_updates`` and resets the global LoRA to (A0, B0); the client needs
nothing more than this initialisation.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from fedmllm import compat
from fedmllm.methods.lora_module import LoRAMethod


def pissa_factors(
    weight: torch.Tensor, r: int, scaling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A0, B0)`` from the top-``r`` singular triplets of ``weight`` (float32 SVD).

    Returns:
        ``A0`` (r×d_in) and ``B0`` (d_out×r) with ``scaling·B0 @ A0`` the best rank-r
        approximation of ``weight``.
    """
    if r > min(weight.shape):
        raise ValueError(f"rank {r} exceeds the weight's smaller side {tuple(weight.shape)}")
    u, s, vh = torch.linalg.svd(weight.detach().to(torch.float32), full_matrices=False)
    root = s[:r].sqrt() / math.sqrt(scaling)
    b0 = u[:, :r] * root  # (d_out, r)
    a0 = root[:, None] * vh[:r]  # (r, d_in)
    return a0, b0


class FRLoRAMethod(LoRAMethod):
    """LoRA initialised from the principal components of W0 (pair with ``aggregator=frlora``).

    Args:
        **kwargs: As :class:`LoRAMethod` (all tensors shared; one rank for all clients).
            Dropout should be 0: the LoRA path carries W0's principal part, so dropping
            its input would drop part of the pretrained layer.
    """

    OFFERS = NEEDS = frozenset({compat.FRLORA})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.share != "all":
            raise ValueError("FRLoRA shares every LoRA tensor: method.share must be 'all'")
        if self.client_ranks is not None:
            raise ValueError("FRLoRA does not support method.client_ranks (one rank for all)")
        self._pissa_init()

    @torch.no_grad()
    def _pissa_init(self) -> None:
        for _, layer in self.lora_layers():
            w = layer.base_layer.weight
            a0, b0 = pissa_factors(w, layer.r, layer.scaling)
            layer.lora_A.weight.copy_(a0)
            layer.lora_B.weight.copy_(b0)
            w.sub_((layer.scaling * (b0 @ a0)).to(w.dtype))
