"""Hybrid mixture of LoRA experts (Fed-MoLE): one shared LoRA expert plus N routed ones.

``H(x) = W0 x + s·B^s A^s x + Σ_{i∈TopK} p_i · s·B_i A_i x``

The shared expert is an ordinary LoRA pair stored under LoRA's own names (``lora_A``,
``lora_B``), so a MoLE layer with N = 0 has exactly the keys, shapes and output of a
:class:`~fedmllm.lora.layers.LoRALinear`, and server rules that pair ``lora_A``/``lora_B``
keys treat the shared expert as plain LoRA. Routed experts are ``experts.<i>.lora_A/B`` and
the gate is ``router.weight``.

Dispatch is sparse: tokens are grouped by the expert they chose and each chosen expert runs
once on its rows, so compute grows with K, not N; an expert no token chose is never called
and gets no gradient (``grad`` stays ``None``, so AdamW leaves it alone).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fedmllm.lora.inject import check_targets_exist, freeze_non_adapter, replace_linear_layers
from fedmllm.lora.layers import LoRALinear
from fedmllm.lora.pair import LowRankPair
from fedmllm.lora.router import (
    Routing,
    RoutingStats,
    TopKRouter,
    check_gating,
    load_balancing_loss,
)


def check_mole_sizes(r: int, num_experts: int, top_k: int) -> None:
    """Raise a clear error unless ``r > 0``, ``N >= 0`` and ``1 <= K <= N`` (when N > 0)."""
    if r <= 0:
        raise ValueError(f"LoRA rank r must be positive, got {r}")
    if num_experts < 0:
        raise ValueError(f"num_experts must be >= 0, got {num_experts}")
    if num_experts > 0 and not 1 <= top_k <= num_experts:
        raise ValueError(
            f"top_k={top_k} must satisfy 1 <= top_k <= num_experts={num_experts} "
            "(K <= N: the router picks K of the N routed experts)"
        )


class MoLELinear(LoRALinear):
    """A frozen linear layer plus a shared LoRA expert and N top-K-routed LoRA experts.

    Args:
        base_layer: The linear layer to wrap; its parameters are frozen.
        r: Rank of every expert.
        alpha: LoRA alpha; every expert is scaled by ``alpha / r`` (``alpha / sqrt(r)``
            with rsLoRA).
        num_experts: N routed experts; 0 makes the layer a plain LoRA layer.
        top_k: K experts chosen per token, ``1 <= K <= N`` (ignored when N = 0).
        dropout: Dropout on the adapter input (one draw per forward, used by the shared and
            the routed path alike); the router sees the undropped input.
        use_rslora: rsLoRA scaling.
        dtype: Adapter dtype (defaults as for LoRA).
        gating: How the chosen experts are weighted (``topk_softmax`` | ``softmax_topk``,
            :data:`~fedmllm.lora.router.GATINGS`).

    Attributes:
        experts: The routed experts.
        router: The gate (``None`` when N = 0).
        stats: Routing statistics, updated while ``record_stats`` is true.
        record_stats: Accumulate :attr:`stats` in every forward.
        compute_aux_loss: Keep the load-balancing loss of the last forward in :attr:`aux_loss`.
        aux_loss: That loss (``None`` unless requested).
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        r: int,
        alpha: float,
        num_experts: int = 8,
        top_k: int = 2,
        dropout: float = 0.0,
        use_rslora: bool = False,
        dtype: torch.dtype | None = None,
        gating: str = "topk_softmax",
    ) -> None:
        check_mole_sizes(r, num_experts, top_k)
        check_gating(gating)
        super().__init__(base_layer, r, alpha, dropout, use_rslora, dtype)
        self.num_experts = num_experts
        self.top_k = top_k if num_experts > 0 else 0
        weight = self.lora_A.weight
        factory = {"device": weight.device, "dtype": weight.dtype}
        # Experts are initialised after the router is built (their historical random stream).
        self.experts = nn.ModuleList(
            LowRankPair(self.in_features, self.out_features, r, **factory, init=False)
            for _ in range(num_experts)
        )
        self.router: TopKRouter | None = (
            TopKRouter(self.in_features, num_experts, top_k, **factory, gating=gating)
            if num_experts
            else None
        )
        self._reset_experts()
        self.stats = RoutingStats(max(num_experts, 1))
        self.record_stats = False
        self.compute_aux_loss = False
        self.aux_loss: torch.Tensor | None = None

    def _reset_experts(self, generator: torch.Generator | None = None) -> None:
        for expert in self.experts:
            expert.reset_lora_parameters(generator)

    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise every expert (A Kaiming, B zeros) and the router."""
        super().reset_lora_parameters(generator)
        # LoRALinear.__init__ calls this before the experts exist.
        if "experts" in self._modules:
            self._reset_experts(generator)
            if self.router is not None:
                self.router.reset_parameters(generator)

    # ------------------------------------------------------------------ paths
    def _shared(self, dx: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(dx)) * self.scaling

    def _route(self, x: torch.Tensor) -> Routing:
        assert self.router is not None
        routing = self.router(x)
        if self.record_stats:
            self.stats.update(routing)
        if self.compute_aux_loss and self.training:
            self.aux_loss = load_balancing_loss(routing.logits, routing.indices)
        return routing

    def _routed(self, x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """``Σ_{i∈TopK} p_i s B_i A_i dx`` per token; ``x`` routes, ``dx`` feeds the experts."""
        lead = x.shape[:-1]
        flat, dflat = x.reshape(-1, self.in_features), dx.reshape(-1, self.in_features)
        routing = self._route(flat)
        choice = routing.indices.reshape(-1)  # assignment j belongs to token j // K
        order = torch.argsort(choice, stable=True)
        token = order // self.top_k
        counts = torch.bincount(choice, minlength=self.num_experts).tolist()
        gate = routing.weights.reshape(-1)[order] * self.scaling
        chunks = dflat[token].split(counts)
        outs = [e(c) for e, c, n in zip(self.experts, chunks, counts, strict=True) if n > 0]
        weighted = torch.cat(outs) * gate.unsqueeze(-1)
        out = weighted.new_zeros(flat.shape[0], self.out_features).index_add(0, token, weighted)
        return out.reshape(*lead, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output (shared expert folded in when merged) plus the adapter paths."""
        result = self.base_layer(x)
        lora_x = x.to(self.lora_A.weight.dtype)
        dx = self.lora_dropout(lora_x)
        # Same operations as LoRALinear.forward, so N = 0 reproduces it bit for bit.
        delta = None if self.merged else self._shared(dx)
        if self.num_experts:
            routed = self._routed(lora_x, dx)
            delta = routed if delta is None else delta + routed
        if delta is None:
            return result
        return (result + delta).to(result.dtype)

    @torch.no_grad()
    def path_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The shared and the routed path's outputs on ``x`` without dropout or statistics.

        Used by the cross-client similarity analysis (Fed-MoLE's Table 9).
        """
        lora_x = x.to(self.lora_A.weight.dtype)
        record, self.record_stats = self.record_stats, False
        try:
            shared = self._shared(lora_x)
            routed = self._routed(lora_x, lora_x) if self.num_experts else torch.zeros_like(shared)
        finally:
            self.record_stats = record
        return {"shared": shared, "routed": routed}

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f"{super().extra_repr()}, num_experts={self.num_experts}, top_k={self.top_k}"


def inject_mole(
    model: nn.Module,
    mole_targets: list[str],
    lora_targets: list[str],
    module_filter: str | None = None,
    **layer_args: Any,
) -> tuple[list[str], list[str]]:
    """MoLE on ``mole_targets``, plain LoRA on ``lora_targets``; freeze everything else.

    Both lists are validated against the model before anything is replaced.

    Args:
        model: The model to modify in place.
        mole_targets: Leaf names that get :class:`MoLELinear` (Fed-MoLE: ``["up_proj"]``).
        lora_targets: Leaf names that get :class:`LoRALinear` (may be empty).
        module_filter: Optional regex on full module names (e.g. ``language_model``).
        **layer_args: :class:`MoLELinear`'s arguments (``r``, ``alpha``, ``num_experts``,
            ``top_k``, ``gating``, ``dropout``, ``use_rslora``); the LoRA layers take the shared
            ones.

    Returns:
        The replaced MoLE and LoRA module names, each sorted.

    Raises:
        ValueError: Empty ``mole_targets``, a name in both lists, an unknown target, a bad
            rank, or K outside ``1..N``.
    """
    if not mole_targets:
        raise ValueError("mole_targets is empty: name at least one module for MoLE (up_proj)")
    both = sorted(set(mole_targets) & set(lora_targets))
    if both:
        raise ValueError(f"modules {both} are in both mole_targets and lora_targets")
    check_mole_sizes(layer_args["r"], layer_args.get("num_experts", 8), layer_args.get("top_k", 2))
    # Checked for both lists up front so that a bad LoRA target leaves no MoLE layer behind.
    check_targets_exist(model, [*mole_targets, *lora_targets])
    lora_args = {k: v for k, v in layer_args.items() if k not in ("num_experts", "top_k", "gating")}
    mole_names = replace_linear_layers(
        model, list(mole_targets), lambda _n, lin: MoLELinear(lin, **layer_args), module_filter
    )
    lora_names = (
        replace_linear_layers(
            model, list(lora_targets), lambda _n, lin: LoRALinear(lin, **lora_args), module_filter
        )
        if lora_targets
        else []
    )
    freeze_non_adapter(model)
    return mole_names, lora_names
