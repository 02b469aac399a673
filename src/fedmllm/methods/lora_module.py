"""Plain LoRA methods: FedAvg (FedIT), Standalone and Centralized differ only in what travels.

:class:`LoRAMethod` injects LoRA into the engine's model and declares which adapter keys are
shared; the local loop, optimiser and hooks are :class:`~fedmllm.methods.base.AdapterMethod`'s.
It is also the family of the LoRA baselines (FFA, FedSA, FRLoRA, FedDPA, FedLEASE), which
change the layer kind or the groups that travel, and it adds heterogeneous client ranks
(UniFLoW appendix E.4). FedProx and SCAFFOLD are add-ons of the base class
(``method.proximal_mu``, ``method.scaffold``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedmllm import compat
from fedmllm.lora import LoRALinear, inject_lora, last_adapter_layer, probe_model
from fedmllm.lora.rank import A_SUFFIX, B_SUFFIX, lora_scaling, pad_rank, truncate_rank
from fedmllm.methods.base import AdapterMethod
from fedmllm.types import AdapterState

SHARE_MODES = ("all", "none")
FACTOR_A, FACTOR_B, OTHER = "A", "B", "other"


def check_client_ranks(client_ranks: dict[str, int] | None, r: int) -> dict[str, int] | None:
    """Validate ``client id -> rank`` against the engine's allocated rank ``r`` (= r_max)."""
    if client_ranks is None:
        return None
    ranks = {str(k): int(v) for k, v in dict(client_ranks).items()}
    bad = {k: v for k, v in ranks.items() if not 1 <= v <= r}
    if bad:
        raise ValueError(f"method.client_ranks must lie in [1, r={r}] (r is r_max); got {bad}")
    return ranks


class LoRAMethod(AdapterMethod):
    """LoRA on the engine's target modules with a sharing rule.

    Parameter groups are the factors: ``A`` (every ``lora_A``), ``B`` (every ``lora_B``) and
    ``other``; ``share="all"`` sends all of them, ``"none"`` keeps everything on the client.

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
        client_ranks: Optional ``client id -> rank`` (UniFLoW appendix E.4). A client of rank
            ``r_k`` uses the first ``r_k`` components of every LoRA pair with scaling
            ``alpha / r_k``, keeps the rest at zero, and sends true-size factors. Clients not
            listed use ``r``.
        name: The method's name in logs and results (``fedavg``, ``standalone``, ...).
        **base_args: :class:`AdapterMethod`'s (``pooled``, ``weight_decay``, ``grad_clip``,
            ``grad_accum``, ``proximal_mu``, ``scaffold``).
    """

    probes_paths = True

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
        client_ranks: dict[str, int] | None = None,
        name: str = "lora",
        **base_args: Any,
    ) -> None:
        super().__init__(engine, name=name, **base_args)
        if share not in SHARE_MODES:
            raise ValueError(f"method.share must be one of {SHARE_MODES}, got {share!r}")
        self.share = share
        self.r, self.alpha, self.dropout, self.use_rslora = r, alpha, dropout, use_rslora
        self.client_ranks = check_client_ranks(client_ranks, r)
        if self.client_ranks is not None and self.scaffold:
            raise ValueError("SCAFFOLD does not support method.client_ranks (one rank for all)")
        self._rank: int | None = None  # the current client's rank; None means r
        self.shared_groups = frozenset({FACTOR_A, FACTOR_B, OTHER} if share == "all" else ())
        self.adapted_modules = self._inject(
            list(target_modules), module_filter, self._layer_factory(dropout)
        )

    def _inject(
        self, target_modules: list[str], module_filter: str | None, factory: Any = None
    ) -> list[str]:
        """Put adapters built by ``factory`` (plain LoRA when None) on the targets."""
        return inject_lora(
            self.model,
            target_modules,
            r=self.r,
            alpha=self.alpha,
            dropout=self.dropout,
            use_rslora=self.use_rslora,
            module_filter=module_filter,
            layer_factory=factory,
        )

    def _layer_factory(self, dropout: float) -> Any:
        """``factory(name, linear) -> AdapterLayer`` for other layer kinds; None: ``LoRALinear``."""
        return None

    def lora_layers(self) -> list[tuple[str, LoRALinear]]:
        """The injected LoRA layers with their dotted names."""
        return [(n, m) for n, m in self.model.named_modules() if isinstance(m, LoRALinear)]

    def group_of(self, key: str) -> str:
        """``A``, ``B`` or ``other``."""
        if key.endswith(A_SUFFIX):
            return FACTOR_A
        return FACTOR_B if key.endswith(B_SUFFIX) else OTHER

    # ------------------------------------------------------------------ ranks
    def parameter_state(self) -> AdapterState:
        """All adapter tensors, at the current client's true rank."""
        state = super().parameter_state()
        return state if self._rank is None else truncate_rank(state, self._rank)

    def load_parameter_state(self, state: AdapterState) -> None:
        """Copy ``state`` in place; smaller-rank factors are zero-padded to ``r``."""
        super().load_parameter_state(pad_rank(state, self.r) if self.client_ranks else state)
        if self._rank is not None:
            self._zero_beyond_rank(self._rank)

    @torch.no_grad()
    def _zero_beyond_rank(self, rank: int) -> None:
        # Zero rows of A and columns of B carry zero gradients, so they stay zero in training.
        for _, layer in self.lora_layers():
            layer.lora_A.weight[rank:].zero_()
            layer.lora_B.weight[:, rank:].zero_()

    def bind_clients(self, client_ids: Sequence[str]) -> None:
        """``method.client_ranks`` must name existing clients (a typo would give r_max)."""
        unknown = sorted(set(self.client_ranks or {}) - set(client_ids))
        if unknown:
            raise ValueError(
                f"method.client_ranks names clients {unknown} that this run does not have; "
                f"its training clients are {list(client_ids)}"
            )

    def client_rank(self, client_id: str) -> int | None:
        """The client's LoRA rank, or ``None`` when all clients share the engine's rank."""
        if self.client_ranks is None:
            return None
        return self.client_ranks.get(client_id, self.r)

    def begin_client(self, client_id: str, extras: AdapterState) -> None:
        """Set the client's rank and scaling (heterogeneous ranks), then the base's hook."""
        super().begin_client(client_id, extras)
        if self.client_ranks is None:
            return
        self._rank = self.client_rank(client_id)
        for _, layer in self.lora_layers():
            layer.scaling = lora_scaling(self.alpha, self._rank, self.use_rslora)

    def needs(self) -> frozenset[str]:
        """Heterogeneous ranks need a rule that combines them."""
        extra = {compat.MIXED_RANKS} if self.client_ranks else set()
        return super().needs() | extra

    # ------------------------------------------------------------------ analysis
    @torch.no_grad()
    def probe_paths(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The LoRA path's output of the last adapted ``up_proj`` on ``batch``.

        The layer Fed-MoLE puts its last MoLE layer on, so runs of both methods can be compared
        (Table 9's FedAvg column); falls back to the last LoRA layer without ``up_proj``.
        """
        return probe_model(self.model, last_adapter_layer(self.model, LoRALinear, "up_proj"), batch)
