"""The contract between a method and the round loop: what is required, and every client hook.

The simulator, the Flower apps and the analyses talk to a method only through
:class:`FederatedMethod`. Its abstract methods are what every method must implement; the
hooks below them have no-op defaults, so a method overrides only what its rule needs and the
round loop calls every hook unconditionally (no hook is looked up by name). Adapter methods
implement it through :class:`fedmllm.methods.base.AdapterMethod`; a test may implement it
directly.

This module depends on torch and ``fedmllm.types`` only, so that ``methods/`` and
``federation/`` can both import it without importing each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch

from fedmllm.types import AdapterState

Batches = Iterator[dict[str, Any]]
"""A client's endless, seeded stream of training batches."""
LrAt = Callable[[int], float]
"""The learning rate of local step i of the round."""
Optimizer = torch.optim.Optimizer


class Engine(Protocol):
    """One frozen base model with its collators, shared by all clients."""

    collator: Callable[[Sequence[Any]], dict[str, Any]]
    gen_collator: Callable[[Sequence[Any]], dict[str, Any]]


class FederatedMethod(ABC):
    """A method as the round loop sees it.

    Attributes:
        name: The method's name in logs and ``results.json``.
        display_name: Its name in report tables (None: see ``fedmllm.train.run_label``).
        report_group: Its row block in report tables (None: see ``run_label``).
        pooled: Train one client on the union of all clients' data (Centralized).
    """

    name: str = "method"
    pooled: bool = False
    display_name: str | None = None
    report_group: str | None = None
    probes_paths: bool = False
    """Whether :meth:`probe_paths` returns adapter-path outputs (Fed-MoLE's Table 9)."""

    # ------------------------------------------------------------------ required
    @abstractmethod
    def adapter_state(self) -> AdapterState:
        """All per-client tensors of the engine now (CPU copies), private extras included."""

    @abstractmethod
    def load_adapter_state(self, state: AdapterState) -> None:
        """Copy ``state`` into the engine's adapter parameters in place."""

    @abstractmethod
    def shared_keys(self, state: AdapterState) -> list[str]:
        """Keys of ``state`` sent to and aggregated by the server."""

    @abstractmethod
    def private_keys(self, state: AdapterState) -> list[str]:
        """Keys of ``state`` the client keeps (stored between its rounds)."""

    @abstractmethod
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One optimiser over the trainable adapter parameters (its state is swapped per client)."""

    @abstractmethod
    def local_update(
        self, fabric: Any, batches: Batches, num_steps: int, optimizer: Optimizer, lr_at: LrAt
    ) -> dict[str, float]:
        """Run ``num_steps`` local steps; ``lr_at(i)`` is the learning rate of local step i."""

    @abstractmethod
    def predict(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        """Greedy answers for a generation batch."""

    # ------------------------------------------------------------------ compatibility
    def offers(self) -> frozenset[str]:
        """What this method's updates provide to a server rule (``fedmllm.compat`` words)."""
        return frozenset()

    def needs(self) -> frozenset[str]:
        """What this method needs from the server rule (``fedmllm.compat`` words)."""
        return frozenset()

    # ------------------------------------------------------------------ client hooks
    def bind_clients(self, client_ids: Sequence[str]) -> None:
        """Once, with the run's training client ids: refuse per-client options naming others."""
        return None

    def begin_round(self, round_idx: int, num_rounds: int) -> None:
        """Before a client's local update of round ``round_idx`` (round-dependent schedules)."""
        return None

    def client_rank(self, client_id: str) -> int | None:
        """The client's LoRA rank (the server then sends ``aggregator.for_client``); ``None``
        when every client uses the engine's rank."""
        return None

    def begin_client(self, client_id: str, extras: AdapterState) -> None:
        """On every swap-in, before the client's tensors are loaded, with the server's
        ``broadcast_extras()`` (SCAFFOLD's c, FedLEASE's clusters)."""
        return None

    def client_extras(self) -> AdapterState:
        """Tensors sent up in ``ClientUpdate.extras`` after ``local_update`` (SCAFFOLD's Δc)."""
        return {}

    def client_extras_shapes(self, shared: AdapterState) -> dict[str, tuple[int, ...]]:
        """Keys and shapes :meth:`client_extras` may return for a client that may share
        ``shared`` (a deployment's server refuses any other extras)."""
        return {}

    def server_constants(self) -> AdapterState:
        """Public frozen tensors a server rule needs and can derive without any client (VeRA's
        seeded projections for FedA²); bound to the rule once, at build. Never sent."""
        return {}

    def received_keys(self, global_keys: list[str]) -> list[str]:
        """After a local update, the global keys that client needed (down-link accounting)."""
        return list(global_keys)

    # ------------------------------------------------------------------ base weights
    def add_to_base_weights(self, deltas: AdapterState) -> None:
        """Add a rule's dense deltas (``<module>.base_layer.weight``) to the frozen weights."""
        raise TypeError(f"{type(self).__name__} cannot change its base weights")

    def base_weights(self, keys: Sequence[str]) -> AdapterState:
        """CPU copies of the named frozen weights (for checkpoints)."""
        raise TypeError(f"{type(self).__name__} cannot read its base weights")

    def load_base_weights(self, state: AdapterState) -> None:
        """Restore frozen weights saved by :meth:`base_weights` (resume)."""
        raise TypeError(f"{type(self).__name__} cannot restore base weights")

    # ------------------------------------------------------------------ analysis
    def probe_paths(self, batch: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """Outputs of the method's adapter paths at one layer (Fed-MoLE's Table 9); ``None``
        when the method has no such paths."""
        return None
