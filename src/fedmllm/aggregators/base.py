"""The server-rule interface every aggregator implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedmllm.types import AdapterState, ClientUpdate


class Aggregator:
    """A server rule over the shared keys.

    Subclasses implement :meth:`aggregate`; stateful rules (server optimisers, control
    variates) override :meth:`state_dict`/:meth:`load_state_dict` so checkpoints carry them.

    Args:
        weighting: ``"samples"`` (by n_k, the default) or ``"uniform"``.
    """

    name = "base"

    def __init__(self, weighting: str = "samples") -> None:
        if weighting not in ("samples", "uniform"):
            raise ValueError(f"weighting must be 'samples' or 'uniform', got {weighting!r}")
        self.weighting = weighting

    def aggregate(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        """Return the new global shared state from this round's client updates."""
        raise NotImplementedError

    def broadcast_extras(self) -> AdapterState:
        """Tensors sent to every sampled client beside the global state (e.g. SCAFFOLD's c).

        Counted in the down-link bytes; empty for most rules.
        """
        return {}

    def base_weight_updates(self) -> AdapterState:
        """Dense deltas to add to the frozen base weights after the last :meth:`aggregate`.

        Keys are ``<module path>.base_layer.weight``; every client shares the new base
        (FedEx-LoRA's residual, FRLoRA's base refresh). Empty for most rules.
        """
        return {}

    def for_client(self, global_state: AdapterState, rank: int) -> AdapterState:
        """The global state as a client of LoRA rank ``rank`` receives it.

        Default: the first ``rank`` components of every LoRA factor (rows of
        ``lora_A.weight``, columns of ``lora_B.weight``); other keys unchanged.
        """
        if rank <= 0:
            raise ValueError(f"rank must be positive, got {rank}")
        out: AdapterState = {}
        for key, t in global_state.items():
            if key.endswith("lora_A.weight"):
                out[key] = t[:rank]
            elif key.endswith("lora_B.weight"):
                out[key] = t[:, :rank]
            else:
                out[key] = t
        return out

    def state_dict(self) -> dict[str, Any]:
        """Server-side state to checkpoint (empty for stateless rules)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises on keys this rule does not know."""
        if state:
            raise KeyError(f"{type(self).__name__} keeps no state but got keys {sorted(state)}")

    def describe(self) -> dict[str, Any]:
        """Plain facts logged with the run (which rule, which weighting)."""
        return {"aggregator": self.name, "weighting": self.weighting}
