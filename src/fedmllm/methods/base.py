"""The one base class of every adapter method: optimiser, local loop, state, what travels.

:class:`AdapterMethod` owns what all methods share — the AdamW optimiser, the local step loop
(autocast, gradient accumulation, clipping, the learning-rate schedule), adapter state get/set
with private extras, the shared/private split by parameter group, the FedProx and SCAFFOLD
add-ons, compatibility words, base-weight updates — and implements every client hook of
:class:`fedmllm.protocol.FederatedMethod` (no-ops unless a family needs one).

A family (LoRA, Fed-MoLE, multimodal/II-stage, modality experts, ...) calls
``super().__init__`` first, puts its adapter layers into ``self.model``, sets
``self.shared_groups``, and overrides only what is its own:

- :meth:`group_of` — which parameter group a state key belongs to;
- :meth:`trainable_groups` — the groups that train at local step i of round t (Fed-MoLE's ADA
  phases, UniFLoW's stage schedule, FedDPA's local-then-global, FedLEASE's warm-up/cluster);
- :meth:`groups_reached` — the groups a batch can reach (a text-only batch, no vision side);
- :meth:`local_loss`, :meth:`extra_loss`, :meth:`forward_context` — the step's loss;
- :meth:`begin_local`, :meth:`end_local`, :meth:`local_metrics`, :meth:`phase_name`;
- :meth:`sends`, :meth:`keeps` — finer sharing rules than "by group".

The set of parameters that train at all (and their groups) is read once, the first time the
method is used (``configure_optimizers``, ``adapter_state``, ``local_update``), so a family
may freeze parameters for good in its constructor (FFA-LoRA's A).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

import lightning as L
import torch

from fedmllm import compat
from fedmllm.lora import get_adapter_state, set_adapter_state
from fedmllm.lora.base_weights import add_to_base_weights, get_base_weights, set_base_weights
from fedmllm.lora.rank import A_SUFFIX, B_SUFFIX
from fedmllm.methods.addons import LocalAddon, make_addons
from fedmllm.methods.local_loop import run_local_update
from fedmllm.protocol import Batches, FederatedMethod, LrAt, Optimizer
from fedmllm.types import AdapterState

ADAPTER = "adapter"
"""The one group of a family that does not distinguish groups."""


class AdapterMethod(L.LightningModule, FederatedMethod):
    """Base of adapter methods (see the module docstring for what a family overrides).

    A family with a server-side partner declares it in :attr:`OFFERS` / :attr:`NEEDS`
    (``fedmllm.compat`` words); the rest of :meth:`offers` is read off the adapters.

    Args:
        engine: The shared engine; its ``model`` receives the adapters.
        name: The method's name in logs and results.
        pooled: Train one client on the union of all clients' data (Centralized).
        weight_decay: AdamW weight decay (frozen tensors get no gradient, so none).
        grad_clip: Max global gradient norm per step (0 disables clipping).
        grad_accum: Micro-batches per optimiser step (a local step is one optimiser step).
        proximal_mu: FedProx's μ (0: off).
        scaffold: Add SCAFFOLD's control variates (pair with ``aggregator=scaffold``).
        display_name: The method's name in report tables (``Fed-MoLE``); None: the rule's
            display name when the run is named after its rule, else ``name``.
        report_group: The report's row block (``Reference``, ``Global``, ``Personalised``,
            ``Ours``, ``Other``); None: the rule's, else ``Other``.
    """

    OFFERS: ClassVar[frozenset[str]] = frozenset()
    NEEDS: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        engine: Any,
        name: str = "adapter",
        pooled: bool = False,
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        grad_accum: int = 1,
        proximal_mu: float = 0.0,
        scaffold: bool = False,
        display_name: str | None = None,
        report_group: str | None = None,
    ) -> None:
        super().__init__()
        if grad_accum < 1:
            raise ValueError(f"method.grad_accum must be >= 1, got {grad_accum}")
        if grad_clip < 0 or weight_decay < 0:
            raise ValueError(
                f"method.grad_clip and method.weight_decay must be >= 0, got {grad_clip}, "
                f"{weight_decay}"
            )
        self.engine, self.model = engine, engine.model
        self.name, self.pooled = name, pooled
        self.display_name, self.report_group = display_name, report_group
        self.weight_decay, self.grad_clip, self.grad_accum = weight_decay, grad_clip, grad_accum
        self.proximal_mu, self.scaffold = float(proximal_mu), bool(scaffold)
        self.shared_groups: frozenset[str] = frozenset({ADAPTER})
        self.current_round = (0, 1)  # (round, rounds) for trainable_groups
        self._trainable: dict[str, torch.nn.Parameter] | None = None
        self._groups: dict[str, list[torch.nn.Parameter]] = {}
        self._addons: list[LocalAddon] = []
        self._late_addons: list[LocalAddon] = []  # given by the build (DP-SGD), run last

    # ------------------------------------------------------------------ family hooks
    def group_of(self, key: str) -> str:
        """The parameter group of an adapter-state key (one group by default)."""
        return ADAPTER

    def trainable_groups(
        self, step: int, num_steps: int, round_idx: int, num_rounds: int
    ) -> frozenset[str]:
        """The groups that train at local step ``step`` of round ``round_idx`` (all here)."""
        return self.present_groups

    def groups_reached(self, batch: dict[str, Any]) -> frozenset[str]:
        """The groups ``batch`` can reach (all here); a step reaching none is skipped."""
        return self.present_groups

    def phase_name(self, step: int, num_steps: int) -> str | None:
        """A name for step ``step``'s phase; its losses are then logged as ``loss_<name>``."""
        return None

    def forward_context(self, batch: dict[str, Any]) -> AbstractContextManager[Any]:
        """Context around every forward of ``batch``, training and generation (routing)."""
        return nullcontext()

    def training_step(self, batch: dict[str, Any], batch_idx: int = 0) -> torch.Tensor:
        """The language-model loss of one training batch."""
        inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        with self.forward_context(batch):
            return self.model(**inputs).loss

    def local_loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        """The task loss of local step ``step`` (logged as ``loss``)."""
        return self.training_step(batch, step)

    def extra_loss(self) -> torch.Tensor | None:
        """A family's regulariser for the step just computed (e.g. MoLE's balance loss)."""
        return None

    def begin_local(self, num_steps: int) -> None:
        """Before the first local step of a client (the received state is loaded)."""

    def end_local(self) -> None:
        """After the last local step, also when training failed (restore layer modes here)."""

    def local_metrics(self) -> dict[str, float]:
        """The family's own scalars about the local update just finished."""
        return {}

    def set_trainable(self, groups: frozenset[str]) -> None:
        """Let exactly the parameters of ``groups`` receive gradients (extend, call super)."""
        for group, params in self._groups.items():
            for p in params:
                p.requires_grad_(group in groups)

    # ------------------------------------------------------------------ groups
    def _ensure_ready(self) -> None:
        """Read the trainable parameters and their groups once, after the family built them."""
        if self._trainable is not None:
            return
        self._trainable = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self._groups = {}
        for name, p in self._trainable.items():
            self._groups.setdefault(self.group_of(name), []).append(p)
        shared = [k for k in self._trainable if self.sends(k)]
        self._addons = make_addons(self.proximal_mu, self.scaffold, self._trainable, shared)
        self._addons += self._late_addons

    def add_addon(self, addon: LocalAddon) -> None:
        """Run ``addon`` after the method's own add-ons (``privacy=dp_sgd``: ``DPSGD``).

        Call it before the first local update (the build does, right after the method).
        """
        self._late_addons.append(addon)
        if self._trainable is not None:  # the add-ons were already read: join them
            self._addons.append(addon)

    @property
    def addons(self) -> list[LocalAddon]:
        """The add-ons the method's arguments switched on (FedProx, then SCAFFOLD)."""
        self._ensure_ready()
        return list(self._addons)

    @property
    def present_groups(self) -> frozenset[str]:
        """The groups that hold trainable parameters."""
        self._ensure_ready()
        return frozenset(self._groups)

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Every parameter that trains in some step, keyed like the adapter state."""
        self._ensure_ready()
        assert self._trainable is not None
        return dict(self._trainable)

    def parameter_groups(self) -> dict[str, str]:
        """Trainable parameter name -> its group."""
        return {n: self.group_of(n) for n in self.trainable_parameters()}

    # ------------------------------------------------------------------ adapter state
    def parameter_state(self) -> AdapterState:
        """The adapter parameters now (CPU copies)."""
        return get_adapter_state(self.model)

    def load_parameter_state(self, state: AdapterState) -> None:
        """Copy adapter parameters in place (unknown keys raise)."""
        set_adapter_state(self.model, state)

    def extra_state(self) -> AdapterState:
        """A family's private per-client tensors that are not parameters (FedDPA's memory)."""
        return {}

    def owns_extra(self, key: str) -> bool:
        """Whether ``key`` belongs to :meth:`extra_state`."""
        return False

    def load_extra_state(self, state: AdapterState) -> None:
        """Restore :meth:`extra_state` from the keys of ``state`` it owns."""

    def is_extra(self, key: str) -> bool:
        """A private tensor that is not an adapter parameter (family or add-on state)."""
        return self.owns_extra(key) or any(a.owns(key) for a in self._addons)

    def adapter_state(self) -> AdapterState:
        """Adapter parameters, then the family's and the add-ons' private tensors."""
        self._ensure_ready()
        state = {**self.parameter_state(), **self.extra_state()}
        for addon in self._addons:
            state.update(addon.extra_state())
        return state

    def load_adapter_state(self, state: AdapterState) -> None:
        """Copy ``state`` in: private extras to their owners, parameters in place."""
        self._ensure_ready()
        self.load_extra_state(state)
        for addon in self._addons:
            addon.load_extra_state(state)
        self.load_parameter_state({k: v for k, v in state.items() if not self.is_extra(k)})

    def sends(self, key: str) -> bool:
        """Whether a parameter key travels (its group is shared)."""
        return self.group_of(key) in self.shared_groups

    def keeps(self, key: str) -> bool:
        """Whether a parameter key that does not travel is kept by the client (if it trains)."""
        return self._trainable is None or key in self._trainable

    def shared_keys(self, state: AdapterState) -> list[str]:
        """Keys of ``state`` the client sends."""
        return sorted(k for k in state if not self.is_extra(k) and self.sends(k))

    def private_keys(self, state: AdapterState) -> list[str]:
        """Private extras and kept parameters that do not travel."""
        shared = set(self.shared_keys(state))
        return sorted(k for k in state if k not in shared and (self.is_extra(k) or self.keeps(k)))

    # ------------------------------------------------------------------ compatibility
    def offers(self) -> frozenset[str]:
        """What the updates provide to a rule, read off the initial shared keys."""
        shared = self.shared_keys(self.adapter_state())
        words = set(self.OFFERS) | {compat.SHARES if shared else compat.PRIVATE_ONLY}
        a = {k[: -len(A_SUFFIX)] for k in shared if k.endswith(A_SUFFIX)}
        b = {k[: -len(B_SUFFIX)] for k in shared if k.endswith(B_SUFFIX)}
        if a and a == b:
            words.add(compat.LORA_PAIRS)
            words.add(compat.PAIRED)
            params = dict(self.model.named_parameters())
            if all(p + "base_layer.weight" in params for p in a):
                words.add(compat.BASE_WEIGHTS)
        for addon in self._addons:
            words |= addon.offers
        return frozenset(words)

    def needs(self) -> frozenset[str]:
        """What the method needs from a rule: the family's and its add-ons' needs."""
        self._ensure_ready()
        return frozenset(self.NEEDS).union(*(a.needs for a in self._addons))

    # ------------------------------------------------------------------ client hooks
    def begin_round(self, round_idx: int, num_rounds: int) -> None:
        """Remember the round (for :meth:`trainable_groups`)."""
        self.current_round = (round_idx, num_rounds)

    def begin_client(self, client_id: str, extras: AdapterState) -> None:
        """Pass the server's broadcast to the add-ons."""
        self._ensure_ready()
        for addon in self._addons:
            addon.set_client(client_id)
            addon.begin_client(extras)

    def client_extras(self) -> AdapterState:
        """The add-ons' tensors to send up (SCAFFOLD's Δc)."""
        out: AdapterState = {}
        for addon in self._addons:
            out.update(addon.client_extras())
        return out

    def client_extras_shapes(self, shared: AdapterState) -> dict[str, tuple[int, ...]]:
        """Keys and shapes the add-ons may send up."""
        self._ensure_ready()
        out: dict[str, tuple[int, ...]] = {}
        for addon in self._addons:
            out.update(addon.client_extras_shapes(shared))
        return out

    def add_to_base_weights(self, deltas: AdapterState) -> None:
        """Add a rule's dense deltas to the shared engine's frozen base weights."""
        add_to_base_weights(self.model, deltas)

    def base_weights(self, keys: Iterable[str]) -> AdapterState:
        """CPU copies of the named base weights (for checkpoints)."""
        return get_base_weights(self.model, keys)

    def load_base_weights(self, state: AdapterState) -> None:
        """Restore base weights saved by :meth:`base_weights`."""
        set_base_weights(self.model, state)

    # ------------------------------------------------------------------ training
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One AdamW over the trainable adapter parameters (the rate is set per step)."""
        self._ensure_ready()
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=1.0, weight_decay=self.weight_decay)

    def local_update(
        self, fabric: Any, batches: Batches, num_steps: int, optimizer: Optimizer, lr_at: LrAt
    ) -> dict[str, float]:
        """``num_steps`` optimiser steps of the schedule's groups (``methods/local_loop.py``)."""
        self.train()
        return run_local_update(self, fabric, batches, num_steps, optimizer, lr_at)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        """Greedy answers for a generation batch."""
        with self.forward_context(batch):
            return self.engine.generate(batch, max_new_tokens)
