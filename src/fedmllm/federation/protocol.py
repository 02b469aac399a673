"""What the round loop needs from a method and an engine, and nothing more.

The simulator is written against these protocols so that it never imports a concrete
method (MoLE, LoRA, ...) or model builder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch

from fedmllm.types import AdapterState


class Engine(Protocol):
    """One frozen base model with its collators, shared by all clients."""

    collator: Callable[[Sequence[Any]], dict[str, Any]]
    gen_collator: Callable[[Sequence[Any]], dict[str, Any]]


class FederatedMethod(Protocol):
    """A LightningModule that trains adapters locally and says which tensors travel.

    Optional hooks the round loop calls when a method defines them (not part of the protocol,
    so methods without them need nothing):

    - ``begin_round(round_idx, num_rounds)``: before each round's first local update (for
      round-dependent local schedules such as UniFLoW's ``by_round``).
    - ``received_keys(global_keys) -> list[str]``: after a client's local update, the global
      keys that client needed; the down-link counts only those (default: the whole global
      state).
    """

    def adapter_state(self) -> AdapterState:
        """All adapter tensors of the engine now (CPU copies)."""

    def load_adapter_state(self, state: AdapterState) -> None:
        """Copy ``state`` into the engine's adapter parameters in place."""

    def shared_keys(self, state: AdapterState) -> list[str]:
        """Keys of ``state`` sent to and averaged by the server."""

    def private_keys(self, state: AdapterState) -> list[str]:
        """Keys of ``state`` that never leave the client."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One optimiser over the trainable adapter parameters (its state is swapped per client)."""

    def local_update(
        self,
        fabric: Any,
        batches: Iterator[dict[str, Any]],
        num_steps: int,
        optimizer: torch.optim.Optimizer,
        lr_at: Callable[[int], float],
    ) -> dict[str, float]:
        """Run ``num_steps`` local steps; ``lr_at(i)`` is the learning rate of local step i."""

    def predict(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        """Greedy answers for a generation batch."""


class ClientHooks(Protocol):
    """Optional method hooks the simulator calls when a method defines them.

    A method without them behaves as a plain one: one rank for all, nothing received beside
    the global state, nothing sent beside the shared state, a base that never changes.
    """

    def client_rank(self, client_id: str) -> int | None:
        """The client's LoRA rank (the simulator then loads ``aggregator.for_client``);
        ``None`` when every client uses the engine's rank."""

    def begin_client(self, client_id: str, extras: AdapterState) -> None:
        """Called on every swap-in, before the client's tensors are loaded, with the
        server's ``broadcast_extras()`` (e.g. SCAFFOLD's c, FedLEASE's clusters)."""

    def client_extras(self) -> AdapterState:
        """Tensors sent up in ``ClientUpdate.extras`` after ``local_update`` (SCAFFOLD's Δc)."""

    def client_extras_shapes(self, shared: AdapterState) -> dict[str, tuple[int, ...]]:
        """Keys and shapes :meth:`client_extras` may return for a client that may share
        ``shared`` (a deployment's server refuses any other extras)."""

    def add_to_base_weights(self, deltas: AdapterState) -> None:
        """Add ``aggregator.base_weight_updates()`` to the shared engine's frozen weights."""

    def base_weights(self, keys: Sequence[str]) -> AdapterState:
        """CPU copies of the named frozen weights (``<module>.base_layer.weight``)."""

    def load_base_weights(self, state: AdapterState) -> None:
        """Restore frozen weights saved by :meth:`base_weights` (resume)."""
