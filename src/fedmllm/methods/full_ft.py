"""Full fine-tuning: every weight of the language model trains and travels (no adapters).

The papers' cost tables set LoRA against it; here it is a method like the others, so the same
federation, rules, traffic accounting and cost dry run show the difference. The "adapter
state" is the language model's own weights: the shared engine swaps them per client exactly
as it swaps adapters, so memory is base + K × (weights + AdamW moments) — affordable for the
tiny model, refused above ``max_params`` (a 7B model would keep K copies of 7B weights and
twice as many moments).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from fedmllm.methods.base import ADAPTER, AdapterMethod
from fedmllm.types import AdapterState

SHARE_MODES = ("all", "none")


class FullFineTuneMethod(AdapterMethod):
    """Every parameter whose name matches ``module_filter`` trains; all of them travel.

    Args:
        engine: The shared engine.
        module_filter: Regex on parameter names selecting the language model (``None``: all).
        share: ``"all"`` (federated) or ``"none"`` (Standalone full fine-tuning).
        max_params: Refuse models whose selected weights exceed this (``None``: no limit).
        name: The method's name in logs and results.
        **base_args: :class:`AdapterMethod`'s (weight decay, clipping, accumulation, add-ons).
    """

    def __init__(
        self,
        engine: Any,
        module_filter: str | None = "language_model",
        share: str = "all",
        max_params: int | None = 50_000_000,
        name: str = "full_ft",
        **base_args: Any,
    ) -> None:
        super().__init__(engine, name=name, **base_args)
        if share not in SHARE_MODES:
            raise ValueError(f"method.share must be one of {SHARE_MODES}, got {share!r}")
        pattern = re.compile(module_filter) if module_filter else None
        params = dict(self.model.named_parameters())
        self._names = [n for n in params if pattern is None or pattern.search(n)]
        if not self._names:
            raise ValueError(f"method.module_filter={module_filter!r} selects no parameter")
        size = sum(params[n].numel() for n in self._names)
        if max_params is not None and size > max_params:
            raise ValueError(
                f"full fine-tuning would train and keep per client {size:,} weights, more than "
                f"method.max_params={max_params:,}; use a LoRA method, or raise method.max_params"
            )
        chosen = set(self._names)
        for n, p in params.items():
            p.requires_grad_(n in chosen)
        self.share = share
        self.num_params = size
        self.shared_groups = frozenset({ADAPTER}) if share == "all" else frozenset()

    def parameter_state(self) -> AdapterState:
        """CPU copies of the language model's weights."""
        params = dict(self.model.named_parameters())
        return {n: params[n].detach().to("cpu", copy=True) for n in self._names}

    @torch.no_grad()
    def load_parameter_state(self, state: AdapterState) -> None:
        """Copy weights in place; a key that is not a trained weight raises."""
        params = dict(self.model.named_parameters())
        unknown = sorted(set(state) - set(self._names))
        if unknown:
            raise KeyError(f"not weights of this full fine-tuning: {unknown[:5]}")
        for k, v in state.items():
            params[k].copy_(v)
