"""The server-rule interface every aggregator implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedmllm import compat
from fedmllm.aggregators.functional import (
    Factors,
    LoRAPair,
    PairedRound,
    lora_pairs,
    pair_ranks,
    paired_round,
    resize_rank,
)
from fedmllm.lora.rank import lora_scaling
from fedmllm.types import AdapterState, ClientUpdate


class Aggregator:
    """A server rule over the shared keys.

    Subclasses implement :meth:`combine` (a round with at least one update; :meth:`aggregate`
    handles the empty round) and list their settings in :attr:`hyperparameters`; stateful
    rules (server optimisers, control variates) override :meth:`state_dict` /
    :meth:`load_state_dict` so checkpoints carry them. What a round yields besides the global
    state goes to ``self._base_updates`` (:meth:`base_weight_updates`) and ``self._stats``
    (:meth:`round_stats`), both emptied at the start of every round.

    Args:
        weighting: ``"samples"`` (by n_k, the default) or ``"uniform"``.
    """

    name = "base"
    requires: frozenset[str] = frozenset({compat.SHARES})
    """What the rule needs of the clients' updates (``fedmllm.compat`` words)."""
    provides: frozenset[str] = frozenset()
    """What the rule does for a method beyond aggregating (``fedmllm.compat`` words)."""
    display_name: str | None = None
    """The name of a run named after this rule in report tables (``FedAdam``)."""
    report_group: str | None = None
    """The report's row block of such a run (``Global``, ``Personalised``, ...)."""
    # Attributes :meth:`describe` reports; each class lists its own (the base classes' come first).
    hyperparameters: tuple[str, ...] = ("weighting",)

    def __init__(self, weighting: str = "samples") -> None:
        if weighting not in ("samples", "uniform"):
            raise ValueError(f"weighting must be 'samples' or 'uniform', got {weighting!r}")
        self.weighting = weighting
        self._base_updates: AdapterState = {}
        self._stats: dict[str, float] = {}

    def aggregate(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        """Return the new global shared state from this round's client updates.

        A round in which no update arrived keeps the global state and leaves the rule's own
        state (moments, control variates) untouched.
        """
        self._base_updates, self._stats = {}, {}
        if not updates:
            return dict(global_state)
        return self.combine(global_state, updates, round_idx)

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        """The rule itself: the new global state from a non-empty round's updates."""
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
        return dict(self._base_updates)

    def for_client(self, global_state: AdapterState, rank: int) -> AdapterState:
        """What a client of LoRA rank ``rank`` loads from a global state of rank r_max.

        Every LoRA pair is cut to its first ``rank`` components (rows of A, columns of B; zero
        components are appended when the global state is smaller); other keys are unchanged.
        Rules whose global B carries the scaling of r_max (FlexLoRA, FedA²-LoRA) also rescale
        B by ``s(r_max) / s(rank)`` through :meth:`_client_b_scale`.

        Args:
            global_state: The state returned by :meth:`aggregate`.
            rank: The client's LoRA rank.

        Returns:
            A new state; the global state is not modified.
        """
        if rank <= 0:
            raise ValueError(f"rank must be positive, got {rank}")
        pairs, _ = lora_pairs(global_state)
        out = dict(global_state)
        for a_key, b_key in pairs.values():
            a, b = global_state[a_key], global_state[b_key]
            a_r, b_r = resize_rank(a, b, rank)
            scale = self._client_b_scale(int(a.shape[0]), rank)
            if scale != 1.0:
                b_r = (b_r.to(torch.float64) * scale).to(b.dtype)
            out[a_key], out[b_key] = a_r, b_r
        return out

    def _client_b_scale(self, global_rank: int, rank: int) -> float:
        """Factor on B when a rank-``global_rank`` pair is handed to a rank-``rank`` client."""
        return 1.0

    def round_stats(self) -> dict[str, float]:
        """Plain scalars about the last :meth:`aggregate` (e.g. condition numbers) to log."""
        return dict(self._stats)

    def state_dict(self) -> dict[str, Any]:
        """Server-side state to checkpoint (empty for stateless rules)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises on keys this rule does not know."""
        if state:
            raise KeyError(f"{type(self).__name__} keeps no state but got keys {sorted(state)}")

    def describe(self) -> dict[str, Any]:
        """Plain facts logged with the run: the rule's name and its :attr:`hyperparameters`."""
        mro = reversed(type(self).__mro__)
        names = dict.fromkeys(n for cls in mro for n in vars(cls).get("hyperparameters", ()))
        return {"aggregator": self.name, **{n: getattr(self, n) for n in names}}


class ScaledRule(Aggregator):
    """A rule that needs LoRA's scaling ``s(r) = alpha / r`` (rsLoRA: ``alpha / sqrt(r)``).

    A client's scaling follows from its tensors' rank, so clients of different ranks carry
    different scalings. Configs interpolate both values from the method:
    ``alpha: ${method.alpha}``, ``use_rslora: ${method.use_rslora}``.

    Args:
        weighting: ``"samples"`` or ``"uniform"``.
        alpha: LoRA alpha of the clients' adapters.
        use_rslora: Whether the clients use rank-stabilised scaling.
    """

    hyperparameters = ("alpha", "use_rslora")

    def __init__(
        self, weighting: str = "samples", alpha: float = 16.0, use_rslora: bool = False
    ) -> None:
        super().__init__(weighting)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.use_rslora = bool(use_rslora)

    def scaling(self, rank: int) -> float:
        """``s(rank)`` of this rule's clients."""
        return lora_scaling(self.alpha, rank, self.use_rslora)


class PairedRule(ScaledRule):
    """A rule that combines each LoRA pair of a round as a whole (FedEx-LoRA, FRLoRA, FlexLoRA,
    FedA²-LoRA); keys outside a pair get the weighted mean.

    :meth:`combine` checks each pair's shapes, hands the clients' factors to
    :meth:`combine_pair` and stores the new pair in the clients' dtype; :meth:`prepare` runs
    before the first pair and :meth:`finish` after the last.
    """

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        rnd = paired_round(updates, self.weighting)
        self.prepare(rnd, global_state, round_idx)
        for prefix, (a_key, b_key) in rnd.pairs.items():
            ranks = pair_ranks(rnd.states, a_key, b_key)  # first: it names a missing key
            a_list = [s[a_key] for s in rnd.states]
            b_list = [s[b_key] for s in rnd.states]
            pair = LoRAPair(prefix, a_key, b_key, a_list, b_list, ranks)
            a, b = self.combine_pair(pair, rnd.weights)
            rnd.out[a_key], rnd.out[b_key] = a.to(a_list[0].dtype), b.to(b_list[0].dtype)
        self.finish(round_idx)
        return {k: rnd.out[k] for k in rnd.keys}

    def prepare(self, rnd: PairedRound, global_state: AdapterState, round_idx: int) -> None:
        """Before the first pair of a round (nothing by default)."""

    def combine_pair(self, pair: LoRAPair, weights: torch.Tensor) -> Factors:
        """The new ``(A, B)`` of ``pair`` from the clients' factors and aggregation weights."""
        raise NotImplementedError

    def finish(self, round_idx: int) -> None:
        """After the last pair of a round (nothing by default)."""
