"""Byzantine-robust server rules over the shared adapter tensors (LoRA factors included).

Every rule sees each client's update on its own, so none works under secure aggregation,
which reveals only the sum (none provides ``compat.SUM_ONLY``). Clients must send the same
keys and shapes (equal LoRA ranks).

Coordinate-wise rules (median, trimmed mean, Bulyan's second step) act on every entry of
every shared tensor, i.e. on the factors A and B separately. Distance-based choices (Krum,
multi-Krum, Bulyan's selection, the norm bound) measure clients by ``distance``:

- ``factors``: the Euclidean distance between the concatenated shared tensors (A and B
  entries side by side, as Flower's rules see them);
- ``products``: each LoRA pair by its product, ``‖B_i A_i − B_j A_j‖_F`` (the change the pair
  makes to the layer, invariant to how it is factored), plus the other keys' plain distance.

``weighting`` matters only where updates are averaged (multi-Krum, norm-bounded mean); the
median, trimmed mean, Krum and Bulyan give each client one vote, as in their papers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fedmllm.aggregators.base import Aggregator
from fedmllm.aggregators.functional import client_weights, common_keys, lora_pairs
from fedmllm.aggregators.robust_math import (
    bulyan_combine,
    bulyan_select,
    clip_factors,
    coordinate_median,
    flatten,
    krum_select,
    product_distances,
    squared_distances,
    trimmed_mean,
    unflatten,
)
from fedmllm.types import AdapterState, ClientUpdate

DISTANCES = ("factors", "products")


class RobustRule(Aggregator):
    """A rule that needs each client's update: flattens the states, combines them, unflattens.

    Args:
        weighting: ``"samples"`` or ``"uniform"`` (used only by averaging rules).
        num_malicious: f, the number of Byzantine clients the rule is built to withstand.
        distance: ``"factors"`` or ``"products"`` (see the module docstring).
    """

    hyperparameters = ("num_malicious", "distance")
    report_group = "Robust"

    def __init__(
        self, weighting: str = "samples", num_malicious: int = 1, distance: str = "factors"
    ) -> None:
        super().__init__(weighting)
        if int(num_malicious) < 0:
            raise ValueError(f"aggregator.num_malicious must be >= 0, got {num_malicious}")
        if distance not in DISTANCES:
            raise ValueError(f"aggregator.distance must be one of {DISTANCES}, got {distance!r}")
        self.num_malicious = int(num_malicious)
        self.distance = distance
        self.selected: list[str] = []
        """Client ids the last round kept (selection rules); every client otherwise."""

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        states = [u.state for u in updates]
        keys = common_keys(states)
        for k in keys:
            shapes = {tuple(s[k].shape) for s in states}
            if len(shapes) > 1:
                raise ValueError(
                    f"aggregator={self.name} needs every client to send {k} in one shape, got "
                    f"{sorted(shapes)}: give every client the same LoRA rank"
                )
        self.selected = [u.client_id for u in updates]
        vec = self.robust(flatten(states, keys), updates, keys, global_state)
        self._stats["kept"] = float(len(self.selected))
        return unflatten(vec, states[0], keys)

    def robust(
        self,
        x: torch.Tensor,
        updates: Sequence[ClientUpdate],
        keys: list[str],
        global_state: AdapterState,
    ) -> torch.Tensor:
        """The new flat global state from the (K, D) matrix of flattened client states."""
        raise NotImplementedError

    def distances(
        self, x: torch.Tensor, updates: Sequence[ClientUpdate], keys: list[str]
    ) -> torch.Tensor:
        """(K, K) squared distances between the clients, by :attr:`distance`."""
        if self.distance == "factors":
            return squared_distances(x)
        pairs, others = lora_pairs(keys)
        return product_distances([u.state for u in updates], list(pairs.values()), others)

    def weights(self, updates: Sequence[ClientUpdate]) -> torch.Tensor:
        """Aggregation weights of ``updates`` by :attr:`weighting`."""
        return client_weights([u.num_examples for u in updates], self.weighting)


class CoordinateMedian(RobustRule):
    """Coordinate-wise median of the clients' tensors (Yin et al., 2018)."""

    name = "median"
    display_name = "Median"

    def robust(
        self,
        x: torch.Tensor,
        updates: Sequence[ClientUpdate],
        keys: list[str],
        global_state: AdapterState,
    ) -> torch.Tensor:
        return coordinate_median(x)


class TrimmedMean(RobustRule):
    """Coordinate-wise β-trimmed mean: drop the ``floor(trim·K)`` largest and smallest values
    of each entry, average the rest (Yin et al., 2018).

    Args:
        trim: β in [0, 0.5).
    """

    name = "trimmed_mean"
    display_name = "Trimmed mean"
    hyperparameters = ("trim",)

    def __init__(self, *args: Any, trim: float = 0.2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= trim < 0.5:
            raise ValueError(f"aggregator.trim must be in [0, 0.5), got {trim}")
        self.trim = float(trim)

    def robust(
        self,
        x: torch.Tensor,
        updates: Sequence[ClientUpdate],
        keys: list[str],
        global_state: AdapterState,
    ) -> torch.Tensor:
        return trimmed_mean(x, self.trim)


class Krum(RobustRule):
    """Krum (Blanchard et al., 2017): the client whose K − f − 2 nearest neighbours are
    closest; with ``keep`` = m > 1, multi-Krum: the weighted mean of the m best-scored.

    Args:
        keep: m, the number of clients averaged (1: Krum; null: K − f).
    """

    name = "krum"
    display_name = "Krum"
    hyperparameters = ("keep",)

    def __init__(self, *args: Any, keep: int | None = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if keep is not None and int(keep) < 1:
            raise ValueError(f"aggregator.keep must be >= 1 or null, got {keep}")
        self.keep = None if keep is None else int(keep)

    def robust(
        self,
        x: torch.Tensor,
        updates: Sequence[ClientUpdate],
        keys: list[str],
        global_state: AdapterState,
    ) -> torch.Tensor:
        m = len(updates) - self.num_malicious if self.keep is None else self.keep
        idx = krum_select(self.distances(x, updates, keys), self.num_malicious, max(1, m))
        self.selected = [updates[i].client_id for i in idx]
        w = self.weights([updates[i] for i in idx])
        return (w[:, None] * x[idx]).sum(0)


class MultiKrum(Krum):
    """Multi-Krum: :class:`Krum` averaging the K − f best-scored clients by default."""

    name = "multikrum"
    display_name = "Multi-Krum"

    def __init__(self, *args: Any, keep: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, keep=keep, **kwargs)


class Bulyan(RobustRule):
    """Bulyan (El Mhamdi et al., 2018): Krum chooses θ = K − 2f clients one by one; each
    entry is then the mean of the θ − 2f chosen values closest to their median.

    Needs K ≥ 4f + 3 clients per round and refuses a round with fewer.
    """

    name = "bulyan"
    display_name = "Bulyan"

    def robust(
        self,
        x: torch.Tensor,
        updates: Sequence[ClientUpdate],
        keys: list[str],
        global_state: AdapterState,
    ) -> torch.Tensor:
        idx = bulyan_select(self.distances(x, updates, keys), self.num_malicious)
        self.selected = [updates[i].client_id for i in idx]
        return bulyan_combine(x[idx], self.num_malicious)


class NormBoundedMean(RobustRule):
    """Norm-bounded mean (Sun et al., 2019): each update ``Δ_k = x_k − x`` is scaled by
    ``min(1, bound / ‖Δ_k‖)``, then ``x + Σ w_k Δ_k``. ``‖Δ_k‖`` is measured by ``distance``
    (``products``: on ``B_k A_k − B A`` per pair); the factor scales the tensors' deltas.

    Args:
        bound: M, the largest update norm that passes unscaled; null: the median of the
            round's update norms (so at most half the clients are scaled down).
    """

    name = "norm_bounded"
    display_name = "Norm-bounded mean"
    hyperparameters = ("bound",)

    def __init__(self, *args: Any, bound: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if bound is not None and not bound > 0:
            raise ValueError(f"aggregator.bound must be > 0 or null, got {bound}")
        self.bound = None if bound is None else float(bound)

    def robust(
        self,
        x: torch.Tensor,
        updates: Sequence[ClientUpdate],
        keys: list[str],
        global_state: AdapterState,
    ) -> torch.Tensor:
        missing = [k for k in keys if k not in global_state]
        if missing:
            raise KeyError(
                f"aggregator={self.name} needs the global value of every shared key to form "
                f"the updates; the global state lacks {missing[:5]}"
            )
        g = flatten([global_state], keys)
        deltas = x - g
        if self.distance == "factors":
            norms = deltas.norm(dim=1)
        else:
            pairs, others = lora_pairs(keys)
            states = [global_state] + [u.state for u in updates]
            norms = product_distances(states, list(pairs.values()), others)[0, 1:].sqrt()
        bound = float(norms.median()) if self.bound is None else self.bound
        c = clip_factors(deltas, norms, bound)
        self._stats["bound"] = bound
        self._stats["clipped"] = float((norms > bound).sum())
        return g[0] + (self.weights(updates) * c)[:, None].mul(deltas).sum(0)
