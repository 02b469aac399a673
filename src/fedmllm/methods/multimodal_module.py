"""LoRA on the LLM and the vision encoder, a trainable projector, and UniFLoW's stage schedule.

This is the plain-LoRA family of UniFLoW (METHODS.md "FedA²-LoRA / UniFLoW II-stage"): LoRA in
the vision tower and in the language model, the projector trained in full, and a schedule that
decides per local step which side trains. It also lets text-only clients (no image in any
batch) take part: they can only reach the LLM-side adapters, so they train and send only those.

What a client sends is decided by what its data can reach, not by the schedule: a text-only
client never sends vision-side tensors, an image client sends every group even in a round in
which the schedule kept one side frozen. That keeps every image client's update on the same
keys, so FedAvg and ridge aggregate it; a federation that mixes text-only and image clients
needs a rule that averages each tensor over the clients that sent it (``expert_aware``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import lightning as L
import torch

from fedmllm.lora import (
    adapter_parameter_names,
    get_adapter_state,
    inject_lora,
    set_adapter_state,
)
from fedmllm.lora.modules_to_save import wrap_modules_to_save
from fedmllm.methods.stage_schedule import (
    ALL_GROUPS,
    IMAGE_SIDE,
    STAGE_I,
    STAGE_II,
    GroupPatterns,
    StageSchedule,
)
from fedmllm.types import AdapterState

SHARE_MODES = ("all", "none")


class MultimodalLoRAMethod(L.LightningModule):
    """LoRA on LLM (+ encoder), optional trainable projector, optional stage schedule.

    Args:
        engine: The shared engine; its ``model`` receives the adapters.
        target_modules: Leaf names of the LLM linears to adapt.
        module_filter: Regex selecting the LLM's modules (keeps LLM LoRA out of the tower).
        r: LoRA rank (LLM and encoder).
        alpha: LoRA alpha.
        dropout: Dropout on the LoRA input.
        use_rslora: rsLoRA scaling ``alpha / sqrt(r)``.
        encoder_target_modules: Leaf names of vision-tower linears to adapt (None: no encoder
            LoRA), e.g. ``[q_proj, k_proj, v_proj, out_proj, fc1, fc2]``.
        encoder_module_filter: Regex selecting the vision tower's modules.
        projector_modules: Leaf names of projector linears trained in full (None: frozen).
        projector_module_filter: Regex selecting the projector's modules.
        stage_schedule: ``{mode, tau, switch_round_frac}`` (see ``StageSchedule``); None
            trains every group at every step.
        group_patterns: ``{encoder, projector}`` regexes that place parameters in groups.
        share: ``"all"`` sends what the client's data reached; ``"none"`` sends nothing.
        pooled: Train one client on all clients' data (Centralized).
        name: The method's name in logs and results.
        weight_decay: AdamW weight decay.
        grad_clip: Max gradient norm (0 disables clipping).
    """

    def __init__(
        self,
        engine: Any,
        target_modules: list[str],
        module_filter: str | None = "language_model",
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.05,
        use_rslora: bool = False,
        encoder_target_modules: list[str] | None = None,
        encoder_module_filter: str | None = "vision_tower",
        projector_modules: list[str] | None = None,
        projector_module_filter: str | None = "multi_modal_projector",
        stage_schedule: dict[str, Any] | StageSchedule | None = None,
        group_patterns: dict[str, str] | None = None,
        share: str = "all",
        pooled: bool = False,
        name: str = "lora_2stage",
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
    ) -> None:
        super().__init__()
        if share not in SHARE_MODES:
            raise ValueError(f"method.share must be one of {SHARE_MODES}, got {share!r}")
        self.engine, self.model = engine, engine.model
        self.share, self.pooled, self.name = share, pooled, name
        self.weight_decay, self.grad_clip = weight_decay, grad_clip
        self.lora_args = {"r": r, "alpha": alpha, "dropout": dropout, "use_rslora": use_rslora}
        self.adapted_modules = self._inject_llm(list(target_modules), module_filter)
        if encoder_target_modules:
            self.adapted_modules += self._inject_encoder(
                list(encoder_target_modules), encoder_module_filter
            )
        if projector_modules:
            self.adapted_modules += wrap_modules_to_save(
                self.model, list(projector_modules), projector_module_filter
            )
        self.patterns = GroupPatterns(**(group_patterns or {}))
        params = dict(self.model.named_parameters())
        self._group_params = {
            g: [params[n] for n in names]
            for g, names in self.patterns.split(adapter_parameter_names(self.model)).items()
        }
        self.schedule = StageSchedule.from_config(stage_schedule)
        self._check_schedule()
        self._round = (0, 1)
        self._reached: set[str] | None = None  # None: before any local update, all is sent

    # ------------------------------------------------------------------ construction hooks
    def _inject_llm(self, targets: list[str], module_filter: str | None) -> list[str]:
        """Put the LLM-side adapters in (plain LoRA here; modality experts override)."""
        return inject_lora(self.model, targets, module_filter=module_filter, **self.lora_args)

    def _inject_encoder(self, targets: list[str], module_filter: str | None) -> list[str]:
        """Put the vision-encoder adapters in (plain LoRA)."""
        return inject_lora(self.model, targets, module_filter=module_filter, **self.lora_args)

    def _check_schedule(self) -> None:
        if self.schedule is None or self.schedule.mode == "simultaneous":
            return
        used = self.schedule.uses()
        empty = {g for g, ps in self._group_params.items() if not ps}
        hints = {
            STAGE_I: "set method.encoder_target_modules and/or method.projector_modules",
            STAGE_II: "the LLM has no adapters",
        }
        for stage, hint in hints.items():
            if stage.issubset(used) and stage.issubset(empty):
                raise ValueError(
                    f"stage_schedule {self.schedule.mode!r} has a stage {sorted(stage)} that "
                    f"trains nothing: {hint}"
                )

    # ------------------------------------------------------------------ adapter state
    def adapter_state(self) -> AdapterState:
        """All adapter tensors (LoRA, experts, projector copy) as CPU copies."""
        return get_adapter_state(self.model)

    def load_adapter_state(self, state: AdapterState) -> None:
        """Copy ``state`` into the adapter parameters in place (unknown keys raise)."""
        set_adapter_state(self.model, state)

    def _sends(self, key: str) -> bool:
        """Whether the last local update's data reached the group of ``key``."""
        return self._reached is None or self.patterns.group_of(key) in self._reached

    def shared_keys(self, state: AdapterState) -> list[str]:
        """What the client's data reached (everything before the first local update)."""
        return [] if self.share == "none" else sorted(k for k in state if self._sends(k))

    def private_keys(self, state: AdapterState) -> list[str]:
        """Everything under ``share="none"``; else nothing (unreached tensors are dropped and
        come back from the server, untouched, next time)."""
        return sorted(state) if self.share == "none" else []

    def received_keys(self, global_keys: list[str]) -> list[str]:
        """The global tensors the last-trained client needed (for down-link accounting)."""
        return [k for k in global_keys if self._sends(k)]

    def begin_round(self, round_idx: int, num_rounds: int) -> None:
        """Told by the round loop before each round (the ``by_round`` schedule needs it)."""
        self._round = (round_idx, num_rounds)

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One AdamW over every adapter parameter (the learning rate is set per step)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=1.0, weight_decay=self.weight_decay)

    def _context(self, batch: dict[str, Any]) -> AbstractContextManager[Any]:
        """Context around a forward of ``batch`` (modality routing in subclasses)."""
        return nullcontext()

    def training_step(self, batch: dict[str, Any], batch_idx: int = 0) -> torch.Tensor:
        """The language-model loss of one training batch."""
        inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        with self._context(batch):
            return self.model(**inputs).loss

    def _observe(self, batch: dict[str, Any]) -> frozenset[str]:
        """Record what ``batch`` reaches; returns its reachable groups."""
        reach = ALL_GROUPS if "pixel_values" in batch else ALL_GROUPS - IMAGE_SIDE
        reach = frozenset(g for g in reach if self._group_params[g])
        assert self._reached is not None
        self._reached |= reach
        return reach

    def _set_trainable(self, groups: frozenset[str]) -> None:
        # Frozen parameters get no .grad, so AdamW skips them: no moment update, no decay.
        for g, params in self._group_params.items():
            for p in params:
                p.requires_grad_(g in groups)

    def _begin_local(self) -> None:
        self._reached = set()

    def _local_metrics(self) -> dict[str, float]:
        return {}

    def local_update(
        self,
        fabric: Any,
        batches: Iterator[dict[str, Any]],
        num_steps: int,
        optimizer: torch.optim.Optimizer,
        lr_at: Callable[[int], float],
    ) -> dict[str, float]:
        """Local AdamW steps; the schedule picks the trained groups at each step.

        A step whose batch cannot reach any scheduled group (a text-only batch in stage I)
        is skipped: there is nothing it could train.
        """
        self.train()
        self._begin_local()
        losses: list[float] = []
        params = [p for g in optimizer.param_groups for p in g["params"]]
        try:
            for step in range(num_steps):
                batch = fabric.to_device(next(batches))
                reach = self._observe(batch)
                groups = (
                    self.schedule.active(step, num_steps, *self._round)
                    if self.schedule is not None
                    else ALL_GROUPS
                ) & reach
                if not groups:
                    continue
                self._set_trainable(groups)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step)
                with fabric.autocast():
                    loss = self.training_step(batch, step)
                optimizer.zero_grad(set_to_none=True)
                fabric.backward(loss)
                if self.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
                optimizer.step()
                losses.append(loss.item())
        finally:
            self._set_trainable(ALL_GROUPS)
        return {
            "loss": sum(losses) / len(losses) if losses else float("nan"),
            "loss_last": losses[-1] if losses else float("nan"),
            "steps_trained": float(len(losses)),
            "steps_skipped": float(num_steps - len(losses)),
            **self._local_metrics(),
        }

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        """Greedy answers for a generation batch."""
        with self._context(batch):
            return self.engine.generate(batch, max_new_tokens)
