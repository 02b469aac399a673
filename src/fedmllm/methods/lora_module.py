"""Plain LoRA methods: FedAvg (FedIT), Standalone and Centralized differ only in what travels.

The module injects LoRA into the engine's model, trains it locally, and declares which
adapter keys are shared with the server. The round loop and the server rule live elsewhere.

:class:`LoRAMethod` is also the base of the baselines (FedProx, SCAFFOLD, FFA, FedSA, ...):
its local loop calls four small hooks (:meth:`begin_local`, :meth:`local_loss`,
:meth:`after_local_step`, :meth:`end_local`) that those methods override, and it implements
the simulator's optional client hooks (heterogeneous ranks, broadcast extras, base-weight
updates; see ``fedmllm.federation.protocol``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
from fedmllm.lora.base_weights import add_to_base_weights, get_base_weights, set_base_weights
from fedmllm.lora.rank import A_SUFFIX, B_SUFFIX, lora_scaling, pad_rank, truncate_rank
from fedmllm.types import AdapterState

SHARE_MODES = ("all", "none")


def check_client_ranks(client_ranks: dict[str, int] | None, r: int) -> dict[str, int] | None:
    """Validate ``client id -> rank`` against the engine's allocated rank ``r`` (= r_max)."""
    if client_ranks is None:
        return None
    ranks = {str(k): int(v) for k, v in dict(client_ranks).items()}
    bad = {k: v for k, v in ranks.items() if not 1 <= v <= r}
    if bad:
        raise ValueError(f"method.client_ranks must lie in [1, r={r}] (r is r_max); got {bad}")
    return ranks


class LoRAMethod(L.LightningModule):
    """LoRA on the engine's target modules with a sharing rule.

    Args:
        engine: The shared engine; its ``model`` receives the adapters.
        target_modules: Leaf names of the linear layers to adapt (``q_proj``, ``up_proj``, ...).
        module_filter: Regex a module's full name must match (e.g. ``language_model`` keeps
            LoRA out of the vision tower, whose attention uses the same leaf names).
        r: LoRA rank (r_max when ``client_ranks`` is set: the engine allocates it once).
        alpha: LoRA alpha; the scaling is ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA).
        dropout: Dropout on the LoRA input.
        use_rslora: rsLoRA scaling.
        share: ``"all"`` sends every adapter tensor (FedAvg, Centralized); ``"none"`` keeps
            everything on the client (Standalone).
        pooled: Train one client on the union of all clients' data (Centralized).
        name: The method's name in logs and results (``fedavg``, ``standalone``, ...).
        weight_decay: AdamW weight decay.
        grad_clip: Max gradient norm (0 disables clipping).
        client_ranks: Optional ``client id -> rank`` (UniFLoW appendix E.4). A client of rank
            ``r_k`` uses the first ``r_k`` components of every LoRA pair with scaling
            ``alpha / r_k``, keeps the rest at zero, and sends true-size factors. Clients not
            listed use ``r``.
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
        client_ranks: dict[str, int] | None = None,
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
        self.r, self.alpha, self.use_rslora = r, alpha, use_rslora
        self.client_ranks = check_client_ranks(client_ranks, r)
        self._rank: int | None = None  # the current client's rank; None means r
        self.adapted_modules = self._inject(list(target_modules), module_filter, dropout)

    def _inject(self, target_modules: list[str], module_filter: str | None, dropout: float):
        """Put the adapters into the model, built by :meth:`_layer_factory`."""
        return inject_lora(
            self.model,
            target_modules,
            r=self.r,
            alpha=self.alpha,
            dropout=dropout,
            use_rslora=self.use_rslora,
            module_filter=module_filter,
            layer_factory=self._layer_factory(dropout),
        )

    def _layer_factory(self, dropout: float) -> Any:
        """``factory(name, linear) -> AdapterLayer`` for other layer kinds; None: ``LoRALinear``."""
        return None

    def lora_layers(self) -> list[tuple[str, LoRALinear]]:
        """The injected LoRA layers with their dotted names."""
        return [(n, m) for n, m in self.model.named_modules() if isinstance(m, LoRALinear)]

    # ------------------------------------------------------------------ adapter state
    def adapter_state(self) -> AdapterState:
        """All adapter tensors, at the current client's true rank."""
        state = get_adapter_state(self.model)
        return state if self._rank is None else truncate_rank(state, self._rank)

    def load_adapter_state(self, state: AdapterState) -> None:
        """Copy ``state`` in place; smaller-rank factors are zero-padded to ``r``."""
        set_adapter_state(self.model, pad_rank(state, self.r) if self.client_ranks else state)
        if self._rank is not None:
            self._zero_beyond_rank(self._rank)

    @torch.no_grad()
    def _zero_beyond_rank(self, rank: int) -> None:
        # Zero rows of A and columns of B carry zero gradients, so they stay zero in training.
        for _, layer in self.lora_layers():
            layer.lora_A.weight[rank:].zero_()
            layer.lora_B.weight[:, rank:].zero_()

    def shared_keys(self, state: AdapterState) -> list[str]:
        return sorted(state) if self.share == "all" else []

    def private_keys(self, state: AdapterState) -> list[str]:
        shared = set(self.shared_keys(state))
        return sorted(k for k in state if k not in shared)

    # ------------------------------------------------------------------ client hooks
    def client_rank(self, client_id: str) -> int | None:
        """The client's LoRA rank, or ``None`` when all clients share the engine's rank."""
        if self.client_ranks is None:
            return None
        return self.client_ranks.get(client_id, self.r)

    def begin_client(self, client_id: str, extras: AdapterState) -> None:
        """Called by the simulator before a client's state is loaded (training or evaluation).

        Sets the client's rank and scaling; ``extras`` is the server's broadcast
        (``Aggregator.broadcast_extras``), unused by plain LoRA.
        """
        if self.client_ranks is None:
            return
        self._rank = self.client_rank(client_id)
        for _, layer in self.lora_layers():
            layer.scaling = lora_scaling(self.alpha, self._rank, self.use_rslora)

    def client_extras(self) -> AdapterState:
        """Tensors sent up beside the shared state after :meth:`local_update` (none here)."""
        return {}

    def client_extras_shapes(self, shared: AdapterState) -> dict[str, tuple[int, ...]]:
        """Keys and shapes :meth:`client_extras` may return (none here)."""
        return {}

    # ------------------------------------------------------------------ base weights
    def add_to_base_weights(self, deltas: AdapterState) -> None:
        """Add a server's dense deltas to the shared engine's frozen base weights."""
        add_to_base_weights(self.model, deltas)

    def base_weights(self, keys: Iterable[str]) -> AdapterState:
        """CPU copies of the named base weights (for checkpoints)."""
        return get_base_weights(self.model, keys)

    def load_base_weights(self, state: AdapterState) -> None:
        """Restore base weights saved by :meth:`base_weights`."""
        set_base_weights(self.model, state)

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=1.0, weight_decay=self.weight_decay)

    def training_step(self, batch: dict[str, Any], batch_idx: int = 0) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        return self.model(**inputs).loss

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Parameters that receive gradients now, keyed like the adapter state."""
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def begin_local(self, optimizer: torch.optim.Optimizer, num_steps: int) -> None:
        """Hook: before the first local step (the global state is loaded)."""

    def local_loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        """Hook: the loss of one local step (extra terms such as FedProx's go here)."""
        return self.training_step(batch, step)

    def after_local_step(self, step: int, lr: float) -> None:
        """Hook: after each optimiser step (SCAFFOLD's correction goes here)."""

    def end_local(self, num_steps: int, lr_sum: float) -> None:
        """Hook: after the last local step; ``lr_sum`` is the sum of the steps' rates."""

    def local_update(
        self,
        fabric: Any,
        batches: Iterator[dict[str, Any]],
        num_steps: int,
        optimizer: torch.optim.Optimizer,
        lr_at: Callable[[int], float],
    ) -> dict[str, float]:
        """Local steps with the run's learning-rate schedule, around the four hooks."""
        self.train()
        self.begin_local(optimizer, num_steps)
        losses = []
        lr_sum = 0.0
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for step in range(num_steps):
            lr = lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = fabric.to_device(next(batches))
            with fabric.autocast():
                loss = self.local_loss(batch, step)
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            optimizer.step()
            self.after_local_step(step, lr)
            lr_sum += lr
            losses.append(loss.item())
        self.end_local(num_steps, lr_sum)
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


def factor_keys(state: AdapterState, which: str) -> list[str]:
    """Sorted keys of the ``"A"`` or ``"B"`` LoRA factors in ``state``."""
    suffix = {"A": A_SUFFIX, "B": B_SUFFIX}[which]
    return sorted(k for k in state if k.endswith(suffix))
