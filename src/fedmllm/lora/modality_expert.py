"""Modality-expert LoRA (X-FLoRA): one LoRA expert per imaging modality, hard-routed per sample.

A :class:`ModalityExpertLinear` holds one low-rank expert per modality (and optionally one
shared expert that every sample uses). Which expert a sample uses is decided by its modality
tag, not by a learned router, so the layer needs each batch row's modality at forward time.
The tags are set on every expert layer of a model by :func:`modality_routing` for the duration
of a forward pass or of a whole ``generate`` call (every decoding step keeps the batch rows in
order, so the same routing stays right with the KV cache).

Parameter keys read ``<module>.experts.<modality>.lora_A.weight`` and
``<module>.shared.lora_A.weight``; servers find a key's modality from that layout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from fedmllm.lora.inject import freeze_non_adapter, replace_linear_layers
from fedmllm.lora.layers import AdapterLayer
from fedmllm.lora.pair import LowRankPair, adapter_dropout
from fedmllm.lora.rank import lora_scaling

EXPERT_KEY = re.compile(r"(?:^|\.)experts\.([^.]+)\.")
"""Matches a modality expert's parameter key; group 1 is the modality."""

Route = list[tuple[str, torch.Tensor | None]]
"""(modality, row indices) per modality present in a batch; ``None`` means every row."""


def check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    mods = tuple(str(m) for m in modalities)
    if not mods:
        raise ValueError("modality-expert LoRA needs at least one modality")
    if len(set(mods)) != len(mods):
        raise ValueError(f"modalities must be distinct, got {list(mods)}")
    bad = [m for m in mods if not m or "." in m]
    if bad:
        raise ValueError(f"modality names must be non-empty and contain no '.', got {bad}")
    return mods


class ModalityExpertLinear(AdapterLayer):
    """A frozen linear layer plus the LoRA expert of each sample's modality.

    ``y_i = W0 x_i + s * B_{m(i)} A_{m(i)} dropout(x_i) [+ s * B_sh A_sh dropout(x_i)]`` for
    batch row ``i`` of modality ``m(i)``. Only the experts of modalities present in the batch
    are computed, so an expert whose modality is absent gets no gradient at all.

    Args:
        base_layer: The linear layer to wrap; its parameters are frozen.
        modalities: The expert names (the benchmark's modality tags), e.g. ``["ct", "mri"]``.
        r: Rank of every expert.
        alpha: LoRA alpha; the scaling is ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA).
        dropout: Dropout on the adapter input.
        use_rslora: Rank-stabilised scaling.
        shared_expert: Add an expert that every sample uses, whatever its modality.
        dtype: Adapter dtype (default: the base dtype, float32 over a half-precision base).

    Attributes:
        experts: ``ModuleDict`` modality -> :class:`~fedmllm.lora.pair.LowRankPair`.
        shared: The shared expert, or ``None``.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        modalities: Sequence[str],
        r: int,
        alpha: float,
        dropout: float = 0.0,
        use_rslora: bool = False,
        shared_expert: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(base_layer)
        self.modalities = check_modalities(modalities)
        self.r, self.alpha, self.use_rslora = r, alpha, use_rslora
        self.scaling = lora_scaling(alpha, r, use_rslora)
        self.lora_dropout = adapter_dropout(dropout)
        shape = (self.in_features, self.out_features, r)
        factory = self.adapter_factory(dtype)
        self.experts = nn.ModuleDict({m: LowRankPair(*shape, **factory) for m in self.modalities})
        self.shared = LowRankPair(*shape, **factory) if shared_expert else None
        self._route: Route | None = None
        self._rows = 0

    def set_route(self, route: Route | None, rows: int = 0) -> None:
        """Use ``route`` (from :func:`make_route`) for the next forwards; ``None`` clears it."""
        if route is not None:
            unknown = sorted({m for m, _ in route} - set(self.modalities))
            if unknown:
                raise ValueError(
                    f"samples of modality {unknown} have no expert; this layer has experts "
                    f"{list(self.modalities)} (set the method's modalities to the benchmark's)"
                )
        self._route, self._rows = route, rows

    def _routed(self, x: torch.Tensor) -> torch.Tensor:
        if self._route is None:
            raise RuntimeError(
                "ModalityExpertLinear called without routing; run the model inside "
                "fedmllm.lora.modality_expert.modality_routing(model, modalities)"
            )
        if x.shape[0] != self._rows:
            raise ValueError(
                f"routing was set for {self._rows} samples but the layer got a batch of "
                f"{x.shape[0]} rows (a batch must not mix image and text-only samples)"
            )
        if len(self._route) == 1 and self._route[0][1] is None:
            return self.experts[self._route[0][0]](x)  # one modality: no gather/scatter
        out = x.new_zeros((*x.shape[:-1], self.out_features))
        for modality, rows in self._route:
            idx = rows.to(x.device)
            # index_add keeps rows of other modalities out of this expert's graph entirely.
            out = out.index_add(0, idx, self.experts[modality](x.index_select(0, idx)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the routed (and shared) expert paths."""
        result = self.base_layer(x)
        lx = self.lora_dropout(x.to(self.experts[self.modalities[0]].lora_A.weight.dtype))
        delta = self._routed(lx)
        if self.shared is not None:
            delta = delta + self.shared(lx)
        return (result + self.scaling * delta).to(result.dtype)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return (
            f"modalities={list(self.modalities)}, r={self.r}, alpha={self.alpha}, "
            f"shared={self.shared is not None}, rslora={self.use_rslora}"
        )


def expert_modality(key: str) -> str | None:
    """The modality of a modality-expert parameter key, or ``None`` for any other key."""
    match = EXPERT_KEY.search(key)
    return match.group(1) if match else None


def make_route(modalities: Sequence[str]) -> Route:
    """Group batch rows by modality tag (first-appearance order, row order kept)."""
    tags = [str(m) for m in modalities]
    if not tags:
        raise ValueError("cannot route an empty batch")
    if len(set(tags)) == 1:
        return [(tags[0], None)]
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(tags):
        groups.setdefault(m, []).append(i)
    return [(m, torch.tensor(rows, dtype=torch.long)) for m, rows in groups.items()]


def expert_layers(model: nn.Module) -> list[ModalityExpertLinear]:
    """Every :class:`ModalityExpertLinear` of ``model``."""
    return [m for m in model.modules() if isinstance(m, ModalityExpertLinear)]


@contextmanager
def modality_routing(model: nn.Module, modalities: Sequence[str]) -> Iterator[None]:
    """Route batch row ``i`` through the expert of ``modalities[i]`` in every expert layer.

    Wrap a forward pass or a whole ``generate`` call; the routing is cleared on exit (also on
    error), so a later call without routing fails loudly instead of reusing stale tags.

    Raises:
        ValueError: A modality has no expert (checked before anything runs).
    """
    route = make_route(modalities)
    layers = expert_layers(model)
    try:
        for layer in layers:
            layer.set_route(route, len(modalities))
        yield
    finally:
        for layer in layers:
            layer.set_route(None)


def inject_modality_experts(
    model: nn.Module,
    target_modules: list[str],
    modalities: Sequence[str],
    module_filter: str | None = None,
    **layer_args: Any,
) -> list[str]:
    """Wrap targeted linear layers with :class:`ModalityExpertLinear` and freeze all else.

    Args:
        model: The model to modify in place.
        target_modules: Leaf names of the linear layers to wrap.
        modalities: Expert names, one per modality.
        module_filter: Optional regex searched in full dotted module names.
        **layer_args: :class:`ModalityExpertLinear`'s other arguments (``r``, ``alpha``,
            ``dropout``, ``use_rslora``, ``shared_expert``).

    Returns:
        The sorted dotted names of the replaced modules.
    """
    mods = check_modalities(modalities)

    def factory(_name: str, linear: nn.Linear) -> AdapterLayer:
        return ModalityExpertLinear(linear, mods, **layer_args)

    replaced = replace_linear_layers(model, target_modules, factory, module_filter)
    freeze_non_adapter(model)
    return replaced
