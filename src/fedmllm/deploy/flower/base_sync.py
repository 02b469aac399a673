"""Keeping every node's frozen base in step with the server's (FedEx-LoRA, FRLoRA).

Rules that fold dense deltas into the frozen weights produce, after each aggregation, one
``d_out × d_in`` delta per adapted layer; every client must apply every delta, in order. A
node that missed messages (it was down, or joined late) needs the deltas since the last round
it applied. Keeping every round's deltas for that grows without bound (on a 7B model, GBs per
round), so the server keeps only those some connected node still lacks, and applies each delta
to its own copy of the base as the nodes do. A node older than the oldest kept delta receives
the server's current base weights instead: the same float32 sums in the same order, so the
node ends bit for bit where a node that applied every delta would be.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fedmllm.types import AdapterState, state_nbytes


class BaseSync:
    """The server's side of the nodes' base weights.

    Args:
        method: The server's method instance (its engine holds the server's copy of the base;
            it needs ``add_to_base_weights`` and ``base_weights`` once a rule sends deltas).
    """

    def __init__(self, method: Any) -> None:
        self.method = method
        self.deltas: list[tuple[int, AdapterState]] = []  # (round, deltas) not all nodes have
        self.keys: set[str] = set()  # every base weight a rule has changed
        self.round = 0  # the last round whose deltas are in the server's base
        self.dropped_through = 0  # deltas of rounds up to this one are no longer kept

    def add(self, round_idx: int, deltas: AdapterState) -> None:
        """Record round ``round_idx``'s deltas and apply them to the server's base."""
        if not deltas:
            return
        self.method.add_to_base_weights(deltas)
        self.deltas.append((round_idx, deltas))
        self.keys |= set(deltas)
        self.round = round_idx

    def for_node(self, base_round: int) -> tuple[list[tuple[int, AdapterState]], AdapterState]:
        """What a node whose base has the deltas up to ``base_round`` needs.

        Returns:
            ``(deltas, base)``: the kept deltas of later rounds, or, when some it lacks were
            dropped, no deltas and the server's current base weights (at :attr:`round`).
        """
        if base_round >= self.round:
            return [], {}
        if base_round < self.dropped_through:
            return [], self.method.base_weights(sorted(self.keys))
        return [(r, d) for r, d in self.deltas if r > base_round], {}

    def drop_applied(self, base_rounds: Iterable[int]) -> None:
        """Forget the deltas every node in ``base_rounds`` (the connected ones) has applied."""
        oldest = min(base_rounds, default=0)
        if any(r <= oldest for r, _ in self.deltas):
            self.dropped_through = max(self.dropped_through, oldest)
            self.deltas = [(r, d) for r, d in self.deltas if r > oldest]

    def nbytes(self) -> int:
        """Bytes of the deltas kept in memory."""
        return sum(state_nbytes(d) for _, d in self.deltas)

    def state_dict(self) -> dict[str, Any]:
        """For the server's checkpoint: the kept deltas and the server's current base."""
        base = self.method.base_weights(sorted(self.keys)) if self.keys else {}
        return {
            "deltas": list(self.deltas),
            "round": self.round,
            "dropped_through": self.dropped_through,
            "base": base,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the server's base weights included)."""
        self.deltas = list(state["deltas"])
        self.round = int(state["round"])
        self.dropped_through = int(state["dropped_through"])
        self.keys = set(state["base"])
        if state["base"]:
            self.method.load_base_weights(state["base"])
