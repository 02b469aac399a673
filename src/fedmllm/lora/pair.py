"""The low-rank pair every adapter layer is made of: factors, their initialisation, dropout.

A pair is ``x -> B A x`` with ``A`` (``in -> r``) Kaiming-uniform (a = sqrt(5), as PEFT and
``nn.Linear``) and ``B`` (``r -> out``) zero, so an adapter starts as the identity on the base
layer's output. The scaling ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA) is
:func:`fedmllm.lora.rank.lora_scaling`; each layer applies it where its mixing formula puts it
(after a gate, around a sum of experts, ...), which is why :class:`LowRankPair` returns the
unscaled product.

Factors are ``nn.Linear`` modules named ``lora_A``/``lora_B`` so that parameter keys read like
PEFT's (``<module>.lora_A.weight``). Creating a factor draws the default ``nn.Linear``
initialisation before :func:`init_low_rank` overwrites it; the draws are kept (not skipped)
so that adapters are initialised from the same random stream as before this module existed.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def adapter_dropout(p: float) -> nn.Module:
    """Dropout on an adapter's input; an identity (no RNG use) when ``p == 0``.

    Raises:
        ValueError: ``p`` outside ``[0, 1)``.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"adapter dropout must lie in [0, 1), got {p}")
    return nn.Dropout(p) if p > 0 else nn.Identity()


def low_rank_factors(
    in_features: int,
    out_features: int,
    r: int,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[nn.Linear, nn.Linear]:
    """Bias-free factors ``A: in -> r`` and ``B: r -> out`` (not yet LoRA-initialised).

    Raises:
        ValueError: ``r`` is not positive.
    """
    if r <= 0:
        raise ValueError(f"LoRA rank r must be positive, got {r}")
    factory = {"device": device, "dtype": dtype}
    return (
        nn.Linear(in_features, r, bias=False, **factory),
        nn.Linear(r, out_features, bias=False, **factory),
    )


@torch.no_grad()
def init_low_rank(
    lora_a: nn.Linear, lora_b: nn.Linear, generator: torch.Generator | None = None
) -> None:
    """LoRA initialisation: ``A`` Kaiming-uniform (a = sqrt(5)), ``B`` zeros.

    Args:
        lora_a: The down projection.
        lora_b: The up projection.
        generator: Optional RNG (e.g. every FFA-LoRA client derives the same A from a seed).
    """
    nn.init.kaiming_uniform_(lora_a.weight, a=math.sqrt(5), generator=generator)
    nn.init.zeros_(lora_b.weight)


class LowRankPair(nn.Module):
    """One low-rank path ``x -> B A x`` (unscaled): an expert, a warm-up or a local adapter.

    Args:
        in_features: Input width.
        out_features: Output width.
        r: Rank, positive.
        init: Initialise now; ``False`` leaves the draw to the owner (Fed-MoLE initialises its
            routed experts after its router, keeping its historical random stream).
        **factory: ``device`` and ``dtype`` of the factors.

    Attributes:
        lora_A: ``in_features -> r``.
        lora_B: ``r -> out_features``.
    """

    def __init__(
        self, in_features: int, out_features: int, r: int, *, init: bool = True, **factory
    ):
        super().__init__()
        self.lora_A, self.lora_B = low_rank_factors(in_features, out_features, r, **factory)
        if init:
            self.reset_lora_parameters()

    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw A (Kaiming uniform) and zero B."""
        init_low_rank(self.lora_A, self.lora_B, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The unscaled product ``B A x``."""
        return self.lora_B(self.lora_A(x))
