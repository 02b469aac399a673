"""Fed-MoLE: hybrid mixture of LoRA experts with alternating disentanglement–alignment.

MoLE layers (shared expert + routed experts + router) go on ``mole_targets`` (``up_proj``),
plain LoRA on ``lora_targets`` (``q_proj, k_proj, v_proj``). Each local update has two phases
(ADA): phase 1 trains the routed experts and routers with everything shared frozen; phase 2
trains the shared experts and the plain LoRA layers with the routed experts and routers
frozen. Only the shared part travels. Variants by config (METHODS.md): ``ada=false`` is V1
(joint training); ``share=all`` is M1, ``share=none`` M2, ``share=shared_router`` M3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import torch

from fedmllm.lora import (
    MoLELinear,
    adapter_parameter_names,
    get_adapter_state,
    inject_mole,
    last_adapter_layer,
    probe_model,
    set_adapter_state,
)
from fedmllm.types import AdapterState

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


class MoLEMethod(L.LightningModule):
    """Fed-MoLE and its ablations (V1, M1–M3) as one LightningModule.

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
        ada: Two-phase local training (False: V1, everything trained jointly).
        phase1_fraction: Share of the local steps spent in phase 1 (the paper leaves it open).
        share: ``shared`` (Fed-MoLE), ``all`` (M1), ``none`` (M2), ``shared_router`` (M3).
        balance_loss_coef: Weight of the Switch load-balancing loss (0, the paper's
            setting, disables it); added only in steps that train the routers.
        name: The method's name in logs and results.
        weight_decay: AdamW weight decay (frozen parameters have no grad, so it skips them).
        grad_clip: Max gradient norm (0 disables clipping).
    """

    pooled = False  # trains per client; Centralized pooling is LoRAMethod's business

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
        ada: bool = True,
        phase1_fraction: float = 0.5,
        share: str = "shared",
        balance_loss_coef: float = 0.0,
        name: str = "mole",
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
    ) -> None:
        super().__init__()
        if share not in SHARE_MODES:
            raise ValueError(f"method.share must be one of {sorted(SHARE_MODES)}, got {share!r}")
        if not 0.0 <= phase1_fraction <= 1.0:
            raise ValueError(f"method.phase1_fraction must be in [0, 1], got {phase1_fraction}")
        if balance_loss_coef < 0:
            raise ValueError(f"method.balance_loss_coef must be >= 0, got {balance_loss_coef}")
        self.engine, self.model = engine, engine.model
        self.name, self.share, self.ada = name, share, ada
        self.phase1_fraction = phase1_fraction
        self.balance_loss_coef = balance_loss_coef
        self.weight_decay, self.grad_clip = weight_decay, grad_clip
        self.num_experts = num_experts
        self.mole_modules, self.lora_modules = inject_mole(
            self.model,
            list(mole_targets),
            list(lora_targets),
            r=r,
            alpha=alpha,
            num_experts=num_experts,
            top_k=top_k,
            dropout=dropout,
            use_rslora=use_rslora,
            module_filter=module_filter,
        )
        self.adapted_modules = sorted(self.mole_modules + self.lora_modules)
        self.groups = {
            k: group_of(k, self.mole_modules) for k in adapter_parameter_names(self.model)
        }

    # ------------------------------------------------------------------ adapter state
    def mole_layers(self) -> list[MoLELinear]:
        """The MoLE layers in module order."""
        return [m for m in self.model.modules() if isinstance(m, MoLELinear)]

    def adapter_state(self) -> AdapterState:
        return get_adapter_state(self.model)

    def load_adapter_state(self, state: AdapterState) -> None:
        set_adapter_state(self.model, state)

    def shared_keys(self, state: AdapterState) -> list[str]:
        sent = SHARE_MODES[self.share]
        return sorted(k for k in state if self.groups[k] in sent)

    def private_keys(self, state: AdapterState) -> list[str]:
        shared = set(self.shared_keys(state))
        return sorted(k for k in state if k not in shared)

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=1.0, weight_decay=self.weight_decay)

    def training_step(self, batch: dict[str, Any], batch_idx: int = 0) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        return self.model(**inputs).loss

    def phase_plan(self, num_steps: int) -> list[tuple[str, frozenset[str], int]]:
        """``(phase name, trained groups, steps)`` of one local update, in order.

        A phase with nothing to train (N = 0 has no routed experts) gives its steps to the
        other, so the client always takes ``num_steps`` optimiser steps.
        """
        if not self.ada:
            return [("joint", frozenset(GROUPS), num_steps)]
        n1 = round(num_steps * self.phase1_fraction)
        plan = [("phase1", PHASE1, n1), ("phase2", PHASE2, num_steps - n1)]
        present = set(self.groups.values())
        live = [p for p in plan if present & p[1]]
        if len(live) == 1:
            live = [(live[0][0], live[0][1], num_steps)]
        return [p for p in live if p[2] > 0]

    def _set_trainable(self, groups: frozenset[str]) -> None:
        for name, param in self.model.named_parameters():
            if name in self.groups:
                param.requires_grad_(self.groups[name] in groups)

    def _configure_layers(self, record: bool, aux: bool) -> None:
        for layer in self.mole_layers():
            layer.record_stats, layer.compute_aux_loss, layer.aux_loss = record, aux, None

    def _aux_loss(self) -> torch.Tensor | None:
        losses = [m.aux_loss for m in self.mole_layers() if m.aux_loss is not None]
        return torch.stack(losses).mean() if losses else None

    def _step(
        self, fabric: Any, batch: dict[str, Any], step: int, optimizer: Any, lr: float
    ) -> tuple[float, float | None]:
        for group in optimizer.param_groups:
            group["lr"] = lr
        with fabric.autocast():
            loss = self.training_step(fabric.to_device(batch), step)
            aux = self._aux_loss()
            total = loss if aux is None else loss + self.balance_loss_coef * aux
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(total)
        if self.grad_clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        optimizer.step()
        return loss.item(), None if aux is None else aux.item()

    def local_update(
        self,
        fabric: Any,
        batches: Iterator[dict[str, Any]],
        num_steps: int,
        optimizer: torch.optim.Optimizer,
        lr_at: Callable[[int], float],
    ) -> dict[str, float]:
        """The ADA phases (or joint training) over ``num_steps`` steps; returns router health.

        The learning-rate schedule runs over the local step index across both phases.
        """
        self.train()
        for layer in self.mole_layers():
            layer.stats.reset()
        losses: dict[str, list[float]] = {}
        aux_values: list[float] = []
        step = 0
        try:
            for phase, groups, steps in self.phase_plan(num_steps):
                self._set_trainable(groups)
                self._configure_layers(True, self.balance_loss_coef > 0 and "router" in groups)
                for _ in range(steps):
                    loss, aux = self._step(fabric, next(batches), step, optimizer, lr_at(step))
                    losses.setdefault(phase, []).append(loss)
                    if aux is not None:
                        aux_values.append(aux)
                    step += 1
        finally:
            self._set_trainable(frozenset(GROUPS))
            self._configure_layers(False, False)
        return self._metrics(losses, aux_values)

    def _metrics(self, losses: dict[str, list[float]], aux: list[float]) -> dict[str, float]:
        every = [v for vs in losses.values() for v in vs]
        out = {
            "loss": sum(every) / max(1, len(every)),
            "loss_last": every[-1] if every else float("nan"),
        }
        out.update({f"loss_{p}": sum(v) / len(v) for p, v in losses.items()})
        if aux:
            out["balance_loss"] = sum(aux) / len(aux)
        layers = [m for m in self.mole_layers() if m.num_experts and m.stats.tokens]
        if layers:
            load = torch.stack([m.stats.load() for m in layers]).mean(dim=0)
            out["router_entropy"] = sum(m.stats.entropy() for m in layers) / len(layers)
            # Coefficient of variation of the load: 0 when perfectly balanced.
            out["expert_load_cv"] = (load.std(unbiased=False) / load.mean()).item()
            out.update({f"hist/expert_load/{i}": v for i, v in enumerate(load.tolist())})
        return out

    # ------------------------------------------------------------------ inference, analysis
    @torch.no_grad()
    def predict(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        return self.engine.generate(batch, max_new_tokens)

    @torch.no_grad()
    def probe_paths(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Shared- and routed-path outputs of the last MoLE layer on ``batch`` (Table 9).

        Returns:
            ``{"shared": ..., "routed": ...}``, each shaped like the layer's output.
        """
        return probe_model(self.model, last_adapter_layer(self.model, MoLELinear), batch)
