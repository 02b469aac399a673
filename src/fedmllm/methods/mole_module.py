"""Fed-MoLE: hybrid mixture of LoRA experts with alternating disentanglement–alignment.

MoLE layers (shared expert + routed experts + router) go on ``mole_targets`` (``up_proj``),
plain LoRA on ``lora_targets`` (``q_proj, k_proj, v_proj``). Each local update has two phases
(ADA): phase 1 trains the routed experts and routers with everything shared frozen; phase 2
trains the shared experts and the plain LoRA layers with the routed experts and routers
frozen. Only the shared part travels. Variants by config (METHODS.md): ``ada=false`` is V1
(joint training); ``share=all`` is M1, ``share=none`` M2, ``share=shared_router`` M3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedmllm.lora import MoLELinear, inject_mole, last_adapter_layer, probe_model
from fedmllm.methods.base import AdapterMethod

# Parameter groups of a MoLE-adapted model. "shared" are the shared experts of MoLE layers,
# "lora" the plain LoRA layers: both belong to the globally aligned part.
GROUPS = ("shared", "lora", "routed", "router")
SHARE_MODES: dict[str, frozenset[str]] = {
    "shared": frozenset({"shared", "lora"}),  # Fed-MoLE and V1
    "all": frozenset(GROUPS),  # M1
    "none": frozenset(),  # M2
    "shared_router": frozenset({"shared", "lora", "router"}),  # M3
}
PHASE1 = frozenset({"routed", "router"})  # disentanglement
PHASE2 = frozenset({"shared", "lora"})  # alignment


def group_of(key: str, mole_layers: list[str]) -> str:
    """Which of :data:`GROUPS` an adapter parameter name belongs to."""
    for layer in mole_layers:
        if key.startswith(layer + "."):
            rest = key[len(layer) + 1 :]
            if rest.startswith("experts."):
                return "routed"
            if rest.startswith("router."):
                return "router"
            return "shared"
    return "lora"


class MoLEMethod(AdapterMethod):
    """Fed-MoLE and its ablations (V1, M1–M3).

    Args:
        engine: The shared engine; its ``model`` receives the adapters.
        mole_targets: Leaf names that get MoLE layers.
        lora_targets: Leaf names that get plain LoRA (may be empty).
        module_filter: Regex a module's full name must match (keeps adapters out of the
            vision tower, whose attention uses the same leaf names).
        r: Rank of every expert and LoRA layer.
        alpha: LoRA alpha (scaling ``alpha / r``).
        dropout: Adapter-input dropout.
        use_rslora: rsLoRA scaling.
        num_experts: N routed experts per MoLE layer (0 degenerates to plain LoRA).
        top_k: K experts per token, ``1 <= K <= N``.
        gating: ``topk_softmax`` (softmax over the K chosen logits) or ``softmax_topk``
            (softmax over all N, kept on the top K, not renormalised); docs/methods.md.
        ada: Two-phase local training (False: V1, everything trained jointly).
        phase1_fraction: Share of the local steps spent in phase 1 (the paper leaves it open).
        share: ``shared`` (Fed-MoLE), ``all`` (M1), ``none`` (M2), ``shared_router`` (M3).
        balance_loss_coef: Weight of the Switch load-balancing loss (0, the paper's
            setting, disables it); added only in steps that train the routers.
        name: The method's name in logs and results.
        **base_args: :class:`AdapterMethod`'s (``weight_decay``, ``grad_clip``,
            ``grad_accum``, ``proximal_mu``, ``scaffold``).
    """

    probes_paths = True

    def __init__(
        self,
        engine: Any,
        mole_targets: Sequence[str] = ("up_proj",),
        lora_targets: Sequence[str] = ("q_proj", "k_proj", "v_proj"),
        module_filter: str | None = "language_model",
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.05,
        use_rslora: bool = False,
        num_experts: int = 8,
        top_k: int = 2,
        gating: str = "topk_softmax",
        ada: bool = True,
        phase1_fraction: float = 0.5,
        share: str = "shared",
        balance_loss_coef: float = 0.0,
        name: str = "mole",
        **base_args: Any,
    ) -> None:
        super().__init__(engine, name=name, **base_args)
        if share not in SHARE_MODES:
            raise ValueError(f"method.share must be one of {sorted(SHARE_MODES)}, got {share!r}")
        if not 0.0 <= phase1_fraction <= 1.0:
            raise ValueError(f"method.phase1_fraction must be in [0, 1], got {phase1_fraction}")
        if balance_loss_coef < 0:
            raise ValueError(f"method.balance_loss_coef must be >= 0, got {balance_loss_coef}")
        self.share, self.ada = share, ada
        self.phase1_fraction = phase1_fraction
        self.balance_loss_coef = balance_loss_coef
        self.num_experts = num_experts
        lora = {"r": r, "alpha": alpha, "dropout": dropout, "use_rslora": use_rslora}
        sizes = {"num_experts": num_experts, "top_k": top_k, "gating": gating}
        self.mole_modules, self.lora_modules = inject_mole(
            self.model, list(mole_targets), list(lora_targets), module_filter, **lora, **sizes
        )
        self.adapted_modules = sorted(self.mole_modules + self.lora_modules)
        self.shared_groups = SHARE_MODES[share]
        self._aux_values: list[float] = []

    def mole_layers(self) -> list[MoLELinear]:
        """The MoLE layers in module order."""
        return [m for m in self.model.modules() if isinstance(m, MoLELinear)]

    def group_of(self, key: str) -> str:
        """One of :data:`GROUPS`."""
        return group_of(key, self.mole_modules)

    # ------------------------------------------------------------------ phases
    def phase_plan(self, num_steps: int) -> list[tuple[str, frozenset[str], int]]:
        """``(phase name, trained groups, steps)`` of one local update, in order.

        A phase with nothing to train (N = 0 has no routed experts) gives its steps to the
        other, so the client always takes ``num_steps`` optimiser steps.
        """
        if not self.ada:
            return [("joint", frozenset(GROUPS), num_steps)]
        n1 = round(num_steps * self.phase1_fraction)
        plan = [("phase1", PHASE1, n1), ("phase2", PHASE2, num_steps - n1)]
        live = [p for p in plan if self.present_groups & p[1]]
        if len(live) == 1:
            live = [(live[0][0], live[0][1], num_steps)]
        return [p for p in live if p[2] > 0]

    def _phase_at(self, step: int, num_steps: int) -> tuple[str, frozenset[str]]:
        start = 0
        for name, groups, steps in self.phase_plan(num_steps):
            if step < start + steps:
                return name, groups
            start += steps
        return "none", frozenset()

    def trainable_groups(
        self, step: int, num_steps: int, round_idx: int, num_rounds: int
    ) -> frozenset[str]:
        """Phase 1 (routed experts, routers), then phase 2 (shared experts, LoRA); V1: all."""
        return self._phase_at(step, num_steps)[1]

    def phase_name(self, step: int, num_steps: int) -> str:
        """``phase1``, ``phase2`` or ``joint``."""
        return self._phase_at(step, num_steps)[0]

    def set_trainable(self, groups: frozenset[str]) -> None:
        """Train ``groups``; record routing, and the balance loss while routers train."""
        super().set_trainable(groups)
        self._configure_layers(True, self.balance_loss_coef > 0 and "router" in groups)

    def _configure_layers(self, record: bool, aux: bool) -> None:
        for layer in self.mole_layers():
            layer.record_stats, layer.compute_aux_loss, layer.aux_loss = record, aux, None

    # ------------------------------------------------------------------ local update
    def begin_local(self, num_steps: int) -> None:
        for layer in self.mole_layers():
            layer.stats.reset()
        self._aux_values = []

    def extra_loss(self) -> torch.Tensor | None:
        """``balance_loss_coef`` × the mean Switch loss of the MoLE layers' last forward."""
        losses = [m.aux_loss for m in self.mole_layers() if m.aux_loss is not None]
        if not losses:
            return None
        aux = torch.stack(losses).mean()
        self._aux_values.append(aux.item())
        return self.balance_loss_coef * aux

    def end_local(self) -> None:
        self._configure_layers(False, False)

    def local_metrics(self) -> dict[str, float]:
        """Router health: balance loss, routing entropy, load spread and histogram."""
        out: dict[str, float] = {}
        if self._aux_values:
            out["balance_loss"] = sum(self._aux_values) / len(self._aux_values)
        layers = [m for m in self.mole_layers() if m.num_experts and m.stats.tokens]
        if layers:
            load = torch.stack([m.stats.load() for m in layers]).mean(dim=0)
            out["router_entropy"] = sum(m.stats.entropy() for m in layers) / len(layers)
            # Coefficient of variation of the load: 0 when perfectly balanced.
            out["expert_load_cv"] = (load.std(unbiased=False) / load.mean()).item()
            out.update({f"hist/expert_load/{i}": v for i, v in enumerate(load.tolist())})
        return out

    # ------------------------------------------------------------------ analysis
    @torch.no_grad()
    def probe_paths(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Shared- and routed-path outputs of the last MoLE layer on ``batch`` (Table 9).

        Returns:
            ``{"shared": ..., "routed": ...}``, each shaped like the layer's output.
        """
        return probe_model(self.model, last_adapter_layer(self.model, MoLELinear), batch)
