"""VeRA (Kopiczko et al., 2024): frozen shared random projections, trained scaling vectors.

``ΔW = Λ_b B Λ_d A``: ``A`` (r × d_in) and ``B`` (d_out × r) are random, frozen, drawn once
from a seed and shared by every adapted layer (a layer narrower than the widest one uses the
leading rows/columns, as PEFT does, so layers of one shape share exactly the same pair); only
the vectors ``d`` (r, ``vera_lambda_d``) and ``b`` (d_out, ``vera_lambda_b``) train and travel.
``b`` starts at zero (the layer starts as its base) and ``d`` at ``d_initial``. There is no
``alpha / r`` scaling: the vectors are the scale.

In this project's low-rank vocabulary (``lora/pair.py``) VeRA's effective pair is
``A_eff = Λ_d A`` (r × d_in) and ``B_eff = Λ_b B`` (d_out × r); ``docs/modality.md`` ("VeRA")
says what FedA² means for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from fedmllm.lora.layers import AdapterLayer
from fedmllm.lora.pair import adapter_dropout

D_SUFFIX = "vera_lambda_d"
B_SUFFIX = "vera_lambda_b"


def kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """``U(-bound, bound)`` with ``bound = sqrt(3) * sqrt(2) / sqrt(fan_in)``, fan_in = columns.

    Kaiming-uniform for a ReLU gain, the VeRA paper's initialisation of the projections.
    """
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def vera_projections(
    seed: int, r: int, max_in: int, max_out: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared frozen pair from ``seed``: ``A`` (r × max_in), then ``B`` (max_out × r).

    Both are drawn from one CPU generator seeded with ``seed`` (A first), so every client
    and the server regenerate the same matrices.

    Raises:
        ValueError: ``r`` or a width is not positive.
    """
    if min(r, max_in, max_out) <= 0:
        raise ValueError(f"VeRA needs positive r and widths, got r={r}, {max_in}, {max_out}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    a = kaiming_uniform((r, max_in), gen)
    b = kaiming_uniform((max_out, r), gen)
    return a, b


def target_linears(
    model: nn.Module, target_modules: Iterable[str], module_filter: str | None
) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` modules an injection with these targets and filter would wrap."""
    targets = set(target_modules)
    pattern = re.compile(module_filter) if module_filter is not None else None
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and name.rsplit(".", 1)[-1] in targets
        and (pattern is None or pattern.search(name))
        and ".base_layer" not in name
    ]


class VeRALinear(AdapterLayer):
    """``y = W0 x + b ⊙ (B (d ⊙ (A dropout(x))))`` with frozen ``A``, ``B`` and trained d, b.

    Args:
        base_layer: The linear layer to wrap; its parameters are frozen.
        vera_a: The shared ``A`` (r × d_in' with d_in' ≥ in_features); its first
            ``in_features`` columns are used.
        vera_b: The shared ``B`` (d_out' × r with d_out' ≥ out_features); its first
            ``out_features`` rows are used.
        dropout: Dropout on the adapter input.
        d_initial: Initial value of every entry of ``d`` (the paper's 0.1).

    Attributes:
        vera_A, vera_B: The layer's slices of the frozen projections (non-persistent buffers:
            they never enter a state dict or an update).
        vera_lambda_d: Trainable ``d`` (r).
        vera_lambda_b: Trainable ``b`` (out_features), zero at the start.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        vera_a: torch.Tensor,
        vera_b: torch.Tensor,
        dropout: float = 0.0,
        d_initial: float = 0.1,
    ) -> None:
        super().__init__(base_layer)
        r = vera_a.shape[0]
        if vera_b.shape[1] != r:
            raise ValueError(f"VeRA A has rank {r} but B has {vera_b.shape[1]} columns")
        if vera_a.shape[1] < self.in_features or vera_b.shape[0] < self.out_features:
            raise ValueError(
                f"VeRA projections {tuple(vera_a.shape)}, {tuple(vera_b.shape)} are too small "
                f"for a {self.in_features} -> {self.out_features} layer"
            )
        factory = self.adapter_factory()
        self.r = r
        self.lora_dropout = adapter_dropout(dropout)
        self.register_buffer(
            "vera_A", vera_a[:, : self.in_features].to(**factory), persistent=False
        )
        self.register_buffer("vera_B", vera_b[: self.out_features].to(**factory), persistent=False)
        self.vera_lambda_d = nn.Parameter(torch.full((r,), float(d_initial), **factory))
        self.vera_lambda_b = nn.Parameter(torch.zeros(self.out_features, **factory))

    def delta_weight(self) -> torch.Tensor:
        """The dense update ``Λ_b B Λ_d A`` (out_features × in_features)."""
        return (self.vera_lambda_b[:, None] * self.vera_B) @ (
            self.vera_lambda_d[:, None] * self.vera_A
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the scaled random-projection path."""
        result = self.base_layer(x)
        h = x.to(self.vera_lambda_d.dtype)
        h = self.vera_lambda_d * F.linear(self.lora_dropout(h), self.vera_A)
        delta = self.vera_lambda_b * F.linear(h, self.vera_B)
        return (result + delta).to(result.dtype)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f"r={self.r}"
