"""FlexLoRA: sum the clients' full updates, redistribute them by truncated SVD."""

from __future__ import annotations

from collections.abc import Sequence

from fedmllm.aggregators.base import ScaledRule
from fedmllm.aggregators.functional import (
    pair_ranks,
    paired_round,
)
from fedmllm.aggregators.lowrank import svd_redistribute
from fedmllm.types import AdapterState, ClientUpdate


class FlexLoRA(ScaledRule):
    """FlexLoRA: ``W = Σ p_k s_k B_k A_k``, SVD, the global pair at the round's r_max.

    The global state holds ``B = U[:, :r_max] diag(S[:r_max]) / s_max`` and
    ``A = Vᵀ[:r_max]``; a client of rank r loads ``B = U[:, :r] diag(S[:r]) / s_r``,
    ``A = Vᵀ[:r]`` (:meth:`for_client`), so heterogeneous ranks are native. The SVD is taken
    of the stacked factors (QR then an SVD of a Σr_k-square core), which is exact and never
    forms W. Keys outside a LoRA pair get the weighted mean.

    Args:
        weighting: ``"samples"`` (p_k ∝ n_k, as FlexLoRA) or ``"uniform"``.
        alpha: LoRA alpha of the clients.
        use_rslora: Whether the clients use ``alpha / sqrt(r)``.
    """

    name = "flexlora"

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        rnd = paired_round(updates, self.weighting)
        states, weights, keys, pairs, out = rnd.states, rnd.weights, rnd.keys, rnd.pairs, rnd.out
        for a_key, b_key in pairs.values():
            ranks = pair_ranks(states, a_key, b_key)
            r_max = max(ranks)
            coefs = [float(p) * self.scaling(r) for p, r in zip(weights, ranks, strict=True)]
            a, b = svd_redistribute(
                [s[a_key] for s in states],
                [s[b_key] for s in states],
                coefs,
                r_max,
                self.scaling(r_max),
            )
            out[a_key] = a.to(states[0][a_key].dtype)
            out[b_key] = b.to(states[0][b_key].dtype)
        return {k: out[k] for k in keys}

    def _client_b_scale(self, global_rank: int, rank: int) -> float:
        return self.scaling(global_rank) / self.scaling(rank)
