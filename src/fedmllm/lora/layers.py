"""Adapter layers that wrap a frozen ``nn.Linear``.

Every adapter wrapper keeps the original layer under the attribute ``base_layer`` so that
parameter keys read exactly like PEFT's (minus the adapter name):
``<module path>.base_layer.weight``, ``<module path>.lora_A.weight``,
``<module path>.lora_B.weight``. The state helpers in :mod:`fedmllm.lora.state` rely on this:
everything inside an :class:`AdapterLayer` except ``base_layer`` is adapter state.
"""

from __future__ import annotations

import torch
from torch import nn

from fedmllm.lora.pair import adapter_dropout, init_low_rank, low_rank_factors
from fedmllm.lora.rank import lora_scaling

# Half-precision adapters train badly (tiny B updates underflow), so adapters over a
# half-precision base default to float32, as PEFT's autocast_adapter_dtype does. A quantised
# base (bitsandbytes' 4-bit / 8-bit weights are integer tensors) gets float32 adapters too.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def default_adapter_dtype(base_dtype: torch.dtype) -> torch.dtype:
    """The dtype new adapter parameters get over a base weight of ``base_dtype``."""
    if base_dtype in _LOW_PRECISION or not base_dtype.is_floating_point:
        return torch.float32
    return base_dtype


class AdapterLayer(nn.Module):
    """Marker base class of every adapter wrapper (LoRA, MoLE, modality experts, ...).

    Subclasses wrap a frozen ``base_layer`` and add trainable adapter modules beside it.
    The marker lets injection and state code find adapter layers without knowing their kind.

    Attributes:
        base_layer: The wrapped, frozen linear layer.
        merged: Whether the adapter delta is currently folded into ``base_layer.weight``.
    """

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"base_layer must be nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.base_layer.requires_grad_(False)
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.merged = False

    def adapter_factory(self, dtype: torch.dtype | None = None) -> dict[str, object]:
        """``device``/``dtype`` keyword arguments for this layer's adapter tensors.

        On the base weight's device; ``dtype`` when given, else the base dtype, or float32 over
        a half-precision base (:func:`default_adapter_dtype`).
        """
        w = self.base_layer.weight
        return {"device": w.device, "dtype": dtype or default_adapter_dtype(w.dtype)}

    # Hugging Face modelling code sometimes reads ``proj.weight`` (dtype checks, weight tying),
    # so the wrapper forwards these to the base layer as PEFT's tuner layers do.
    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The frozen base bias, if any."""
        return self.base_layer.bias

    def merge(self) -> None:
        """Fold the adapter into the base weight (not every adapter kind can)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be merged")

    def unmerge(self) -> None:
        """Undo :meth:`merge`."""
        raise NotImplementedError(f"{type(self).__name__} cannot be unmerged")


class LoRALinear(AdapterLayer):
    """A frozen linear layer plus a low-rank update: ``y = W0 x + s * B A dropout(x)``.

    Args:
        base_layer: The linear layer to wrap; its parameters are frozen.
        r: LoRA rank, positive.
        alpha: LoRA alpha; the scaling is ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA).
        dropout: Dropout probability on the adapter input; 0 uses an identity.
        use_rslora: Use rank-stabilised scaling ``alpha / sqrt(r)``.
        dtype: Dtype of the adapter parameters; defaults to the base dtype, or float32 when
            the base is half precision.

    Attributes:
        r: LoRA rank.
        alpha: LoRA alpha.
        scaling: Multiplier of the low-rank path.
        lora_A: ``in_features -> r`` projection, Kaiming-uniform initialised.
        lora_B: ``r -> out_features`` projection, zero initialised so the layer starts as
            the base layer.
        lora_dropout: Dropout applied to the adapter input only.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        use_rslora: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(base_layer)
        self.r = r
        self.alpha = alpha
        self.use_rslora = use_rslora
        self.scaling = lora_scaling(alpha, r, use_rslora)
        self.lora_dropout = adapter_dropout(dropout)
        self.lora_A, self.lora_B = low_rank_factors(
            self.in_features, self.out_features, r, **self.adapter_factory(dtype)
        )
        self.reset_lora_parameters()

    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise A (Kaiming uniform, a=sqrt(5), as PEFT) and B (zeros).

        Args:
            generator: Optional RNG, e.g. to give every client the same A (FFA-LoRA).
        """
        init_low_rank(self.lora_A, self.lora_B, generator)

    def delta_weight(self) -> torch.Tensor:
        """The dense update ``scaling * B @ A`` of shape ``(out_features, in_features)``."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    def _merge_delta(self) -> torch.Tensor:
        # Computed in float32 at least, so that merging then unmerging a half-precision base
        # loses as little as possible.
        w = self.base_layer.weight
        a, b = self.lora_A.weight, self.lora_B.weight
        compute = torch.promote_types(a.dtype, torch.float32)
        delta = self.scaling * (b.to(compute) @ a.to(compute))
        return delta.to(device=w.device, dtype=w.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the delta into ``base_layer.weight``; forward then skips the adapter path."""
        if self.merged:
            raise RuntimeError("LoRALinear is already merged")
        self.base_layer.weight.add_(self._merge_delta())
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the delta from ``base_layer.weight`` again (exact up to rounding)."""
        if not self.merged:
            raise RuntimeError("LoRALinear is not merged")
        self.base_layer.weight.sub_(self._merge_delta())
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the scaled low-rank path (the base output alone when merged)."""
        result = self.base_layer(x)
        if self.merged:
            return result
        lora_x = x.to(self.lora_A.weight.dtype)
        delta = self.lora_B(self.lora_A(self.lora_dropout(lora_x))) * self.scaling
        return (result + delta).to(result.dtype)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return (
            f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:.4g}, "
            f"rslora={self.use_rslora}, merged={self.merged}"
        )
