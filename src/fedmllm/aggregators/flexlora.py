"""FlexLoRA: sum the clients' full updates, redistribute them by truncated SVD."""

from __future__ import annotations

import torch

from fedmllm import compat
from fedmllm.aggregators.base import PairedRule
from fedmllm.aggregators.functional import (
    Factors,
    LoRAPair,
)
from fedmllm.aggregators.lowrank import svd_redistribute


class FlexLoRA(PairedRule):
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
    display_name = "FlexLoRA"
    report_group = "Global"
    requires = frozenset({compat.SHARES, compat.LORA_PAIRS})
    provides = frozenset({compat.MIXED_RANKS})

    def combine_pair(self, pair: LoRAPair, weights: torch.Tensor) -> Factors:
        r_max = max(pair.ranks)
        coefs = [float(p) * self.scaling(r) for p, r in zip(weights, pair.ranks, strict=True)]
        return svd_redistribute(pair.a, pair.b, coefs, r_max, self.scaling(r_max))

    def _client_b_scale(self, global_rank: int, rank: int) -> float:
        return self.scaling(global_rank) / self.scaling(rank)
