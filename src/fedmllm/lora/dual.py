"""A LoRA layer with a global and a local adapter mixed by a weight (FedDPA).

``y = W0 x + s·(w·B_g A_g x + (1 − w)·B_l A_l x)``. The global pair keeps LoRA's key names
(``lora_A``/``lora_B``), so server rules see an ordinary LoRA pair; the local pair is
``local_lora_A``/``local_lora_B``. ``w`` is a float, or one weight per batch row
(instance-wise mixing): it is read inside every forward, so during generation it acts on
every decoding step of its own row.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fedmllm.lora.layers import LoRALinear
from fedmllm.lora.pair import init_low_rank, low_rank_factors


class DualLoRALinear(LoRALinear):
    """Frozen linear + global LoRA + local LoRA, mixed by :attr:`mix`.

    Args:
        base_layer, r, alpha, dropout, use_rslora, dtype: As :class:`LoRALinear` (both
            adapters share rank and scaling).

    Attributes:
        mix: Weight ``w`` of the global adapter: a float in [0, 1], or a 1-D tensor with one
            weight per batch row.
        local_lora_A: The local adapter's A (Kaiming uniform).
        local_lora_B: The local adapter's B (zeros).
    """

    def __init__(self, base_layer: nn.Linear, *args: Any, **kwargs: Any) -> None:
        super().__init__(base_layer, *args, **kwargs)
        r = self.r
        factory = {"device": self.lora_A.weight.device, "dtype": self.lora_A.weight.dtype}
        self.local_lora_A, self.local_lora_B = low_rank_factors(
            self.in_features, self.out_features, r, **factory
        )
        init_low_rank(self.local_lora_A, self.local_lora_B)
        self.mix: float | torch.Tensor = 1.0

    def _row_weights(self, x: torch.Tensor) -> torch.Tensor | float:
        if not isinstance(self.mix, torch.Tensor):
            return float(self.mix)
        if self.mix.dim() != 1 or self.mix.shape[0] != x.shape[0]:
            raise ValueError(
                f"instance-wise mix has shape {tuple(self.mix.shape)} but the batch has "
                f"{x.shape[0]} rows"
            )
        return self.mix.to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the mixed global and local low-rank paths."""
        result = self.base_layer(x)
        lx = self.lora_dropout(x.to(self.lora_A.weight.dtype))
        w = self._row_weights(lx)
        delta = torch.zeros((), dtype=lx.dtype, device=lx.device)
        # Skip a path whose weight is exactly zero: no compute, and no gradient through it.
        if not (isinstance(w, float) and w == 0.0):
            delta = delta + w * self.lora_B(self.lora_A(lx))
        if not (isinstance(w, float) and w == 1.0):
            delta = delta + (1 - w) * self.local_lora_B(self.local_lora_A(lx))
        return (result + self.scaling * delta).to(result.dtype)

    def merge(self) -> None:
        """Not possible: the mix can differ per input row."""
        raise NotImplementedError("DualLoRALinear cannot be merged (its mix is per input)")

    def unmerge(self) -> None:
        """Not possible (see :meth:`merge`)."""
        raise NotImplementedError("DualLoRALinear cannot be unmerged")

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f"{super().extra_repr()}, dual=True"


class GatedDualLoRALinear(DualLoRALinear):
    """A dual layer whose mix is learned: ``w = sigmoid(mix_logit)`` (FedMRG's decoder).

    ``mix_logit`` is a private scalar parameter per layer; setting :attr:`mix` to a float or a
    tensor overrides it (``None``, the default, uses the gate).

    Args:
        base_layer, *args, **kwargs: As :class:`DualLoRALinear`.
        mix_init: The initial ``w`` (0.5: both adapters weigh the same).
    """

    def __init__(
        self, base_layer: nn.Linear, *args: Any, mix_init: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(base_layer, *args, **kwargs)
        logit = torch.logit(torch.tensor(float(mix_init)).clamp(1e-4, 1 - 1e-4))
        self.mix_logit = nn.Parameter(logit.to(self.lora_A.weight.dtype))
        self.mix: float | torch.Tensor | None = None  # type: ignore[assignment]

    def _row_weights(self, x: torch.Tensor) -> torch.Tensor | float:
        if self.mix is None:
            return torch.sigmoid(self.mix_logit).to(x.dtype)
        return super()._row_weights(x)
