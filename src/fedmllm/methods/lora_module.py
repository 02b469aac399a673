"""Plain LoRA methods: FedAvg (FedIT), Standalone and Centralized differ only in what travels.

The module injects LoRA into the engine's model, trains it locally, and declares which
adapter keys are shared with the server. The round loop and the server rule live elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch

from fedmllm.lora import (
    LoRALinear,
    get_adapter_state,
    inject_lora,
    last_adapter_layer,
    probe_model,
    set_adapter_state,
)
from fedmllm.types import AdapterState

SHARE_MODES = ("all", "none")


class LoRAMethod(L.LightningModule):
    """LoRA on the engine's target modules with a sharing rule.

    Args:
        engine: The shared engine; its ``model`` receives the adapters.
        target_modules: Leaf names of the linear layers to adapt (``q_proj``, ``up_proj``, ...).
        module_filter: Regex a module's full name must match (e.g. ``language_model`` keeps
            LoRA out of the vision tower, whose attention uses the same leaf names).
        r: LoRA rank.
        alpha: LoRA alpha; the scaling is ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA).
        dropout: Dropout on the LoRA input.
        use_rslora: rsLoRA scaling.
        share: ``"all"`` sends every adapter tensor (FedAvg, Centralized); ``"none"`` keeps
            everything on the client (Standalone).
        pooled: Train one client on the union of all clients' data (Centralized).
        name: The method's name in logs and results (``fedavg``, ``standalone``, ...).
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
        share: str = "all",
        pooled: bool = False,
        name: str = "lora",
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
    ) -> None:
        super().__init__()
        if share not in SHARE_MODES:
            raise ValueError(f"share must be one of {SHARE_MODES}, got {share!r}")
        self.engine = engine
        self.model = engine.model
        self.share = share
        self.name = name
        self.pooled = pooled
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.adapted_modules = inject_lora(
            self.model,
            list(target_modules),
            r=r,
            alpha=alpha,
            dropout=dropout,
            use_rslora=use_rslora,
            module_filter=module_filter,
        )

    # ------------------------------------------------------------------ adapter state
    def adapter_state(self) -> AdapterState:
        return get_adapter_state(self.model)

    def load_adapter_state(self, state: AdapterState) -> None:
        set_adapter_state(self.model, state)

    def shared_keys(self, state: AdapterState) -> list[str]:
        return sorted(state) if self.share == "all" else []

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

    def local_update(
        self,
        fabric: Any,
        batches: Iterator[dict[str, Any]],
        num_steps: int,
        optimizer: torch.optim.Optimizer,
        lr_at: Callable[[int], float],
    ) -> dict[str, float]:
        """Plain local SGD steps with the run's learning-rate schedule."""
        self.train()
        losses = []
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for step in range(num_steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            batch = fabric.to_device(next(batches))
            with fabric.autocast():
                loss = self.training_step(batch, step)
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            optimizer.step()
            losses.append(loss.item())
        return {
            "loss": sum(losses) / max(1, len(losses)),
            "loss_last": losses[-1] if losses else float("nan"),
        }

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        return self.engine.generate(batch, max_new_tokens)

    @torch.no_grad()
    def probe_paths(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The LoRA path's output of the last adapted ``up_proj`` on ``batch``.

        The layer Fed-MoLE puts its last MoLE layer on, so runs of both methods can be compared
        (Table 9's FedAvg column); falls back to the last LoRA layer without ``up_proj``.
        """
        return probe_model(self.model, last_adapter_layer(self.model, LoRALinear, "up_proj"), batch)
