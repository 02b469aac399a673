"""FedA²-LoRA (UniFLoW): A averaged, B solved in closed form against the mean product."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from fedmllm import compat
from fedmllm.aggregators.base import PairedRule
from fedmllm.aggregators.functional import (
    Factors,
    LoRAPair,
    PairedRound,
    client_weights,
    padded_mean,
)
from fedmllm.aggregators.lowrank import check_ridge_mode, ridge_factors
from fedmllm.aggregators.vera_ridge import vera_ridge
from fedmllm.types import AdapterState, ClientUpdate

VERA_D, VERA_B = "vera_lambda_d", "vera_lambda_b"

log = logging.getLogger(__name__)


class FedA2LoRA(PairedRule):
    """FedA²-LoRA: ``A = Σ w_k A_k``, ``B = U Aᵀ (A Aᵀ + λI)⁻¹`` with ``U = Σ w_k B_k A_k``.

    ``U Aᵀ`` is computed as ``Σ w_k B_k (A_k Aᵀ)`` and the r×r system solved by Cholesky, so
    no d_out×d_in matrix is formed. Keys outside a LoRA pair get the weighted mean.

    Heterogeneous ranks: A_k is zero-padded to the round's r_max and the target is the mean
    of what the clients really applied, ``Σ w_k s_k B_k A_k``, expressed at the global
    scaling s_max, i.e. B_k enters with the factor ``s_k / s_max`` (1 for equal ranks, where
    this is exactly the paper). Accordingly a client of rank r loads the first r components
    with B rescaled by ``s_max / s_r`` (as FlexLoRA), so a returning untouched client
    reproduces its own update instead of growing by ``s_r / s_max`` every round.

    VeRA layers (``vera_lambda_d``/``vera_lambda_b``): ``d`` averaged, ``b`` solved by the
    ridge restricted to VeRA's form (``aggregators/vera_ridge.py``) with the frozen projections
    the method binds (:meth:`bind_constants`).

    Args:
        weighting: ``"samples"`` or ``"uniform"``.
        lam: Tikhonov λ > 0 (0.1: UniFLoW's Table 12; its main text names 1).
        mode: ``"tikhonov"`` (always λ, the paper's main results) or ``"conditional"``
            (plain solve when ``cond(A Aᵀ) ≤ cond_threshold``, λ otherwise: Eq. 13 literally).
        cond_threshold: Condition number up to which ``A Aᵀ`` counts as invertible. The
            default 1e4 keeps ``cond · eps_float32`` below 1e-3, the error the plain solve
            may add to B when the clients' float32 factors are rounded.
        warmup_rounds: Rounds (0-based index below this) aggregated by plain FedAvg of the
            factors before the ridge solve takes over (the paper's warm start).
        alpha: LoRA alpha of the clients.
        use_rslora: Whether the clients use ``alpha / sqrt(r)``.
    """

    name = "ridge"
    display_name = "FedA²-LoRA"
    report_group = "Global"
    requires = frozenset({compat.SHARES, compat.PAIRED})
    provides = frozenset({compat.MIXED_RANKS})
    hyperparameters = ("lam", "mode", "cond_threshold", "warmup_rounds")

    def __init__(
        self,
        weighting: str = "samples",
        lam: float = 0.1,
        mode: str = "tikhonov",
        cond_threshold: float = 1e4,
        warmup_rounds: int = 0,
        alpha: float = 16.0,
        use_rslora: bool = False,
    ) -> None:
        super().__init__(weighting, alpha, use_rslora)
        check_ridge_mode(mode)
        if not lam > 0:
            raise ValueError(f"ridge lam must be > 0, got {lam}")
        if not cond_threshold >= 1:
            raise ValueError(f"cond_threshold must be >= 1, got {cond_threshold}")
        if warmup_rounds < 0:
            raise ValueError(f"warmup_rounds must be >= 0, got {warmup_rounds}")
        self.lam, self.mode = float(lam), mode
        self.cond_threshold, self.warmup_rounds = float(cond_threshold), int(warmup_rounds)
        self._warm, self._conds, self._lams = False, [], []  # the round in progress
        self._shrink: list[float] = []
        self._b_ratio: list[float] = []
        self.constants: AdapterState = {}

    def bind_constants(self, constants: AdapterState) -> None:
        """The method's public frozen tensors (VeRA: ``<module>.vera_A`` / ``.vera_B``)."""
        self.constants = dict(constants)

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        """LoRA pairs by the ridge solve, VeRA layers by :func:`vera_ridge`, the rest averaged."""
        out = super().combine(global_state, updates, round_idx)
        prefixes = [k[: -len(VERA_D)] for k in out if k.endswith(VERA_D)]
        prefixes = [p for p in prefixes if p + VERA_B in out]
        if not prefixes or self._warm:
            return out
        weights = [
            float(w) for w in client_weights([u.num_examples for u in updates], self.weighting)
        ]
        ridge_rows = 0
        for p in prefixes:
            if p + "vera_A" not in self.constants:
                raise ValueError(
                    f"aggregator=ridge got VeRA vectors of {p[:-1]!r} but no frozen projections "
                    "for it: the method must bind them (method=vera does, through build)"
                )
            d_key, b_key = p + VERA_D, p + VERA_B
            d, b, rows = vera_ridge(
                [u.state[d_key] for u in updates],
                [u.state[b_key] for u in updates],
                weights,
                self.constants[p + "vera_A"],
                self.constants[p + "vera_B"],
                lam=self.lam,
                mode=self.mode,
                cond_threshold=self.cond_threshold,
            )
            out[d_key], out[b_key] = d.to(out[d_key].dtype), b.to(out[b_key].dtype)
            ridge_rows += rows
        self._stats.update(
            {"vera_layers": float(len(prefixes)), "vera_ridge_rows": float(ridge_rows)}
        )
        return out

    def prepare(self, rnd: PairedRound, global_state: AdapterState, round_idx: int) -> None:
        self._warm, self._conds, self._lams = round_idx < self.warmup_rounds, [], []
        self._shrink, self._b_ratio = [], []

    def combine_pair(self, pair: LoRAPair, weights: torch.Tensor) -> Factors:
        w = [float(x) for x in weights]
        s_max = self.scaling(max(pair.ranks))
        coefs = [self.scaling(r) / s_max for r in pair.ranks]
        if self._warm:
            b_weights = [wk * c for wk, c in zip(w, coefs, strict=True)]
            return padded_mean(pair.a, w, 0), padded_mean(pair.b, b_weights, 1)
        sol = ridge_factors(
            pair.a,
            pair.b,
            w,
            lam=self.lam,
            mode=self.mode,
            cond_threshold=self.cond_threshold,
            b_coefs=coefs,
        )
        self._conds.append(sol.cond)
        self._lams.append(sol.lam)
        # Diagnostics of the Tikhonov shrinkage: each eigen-direction of A Aᵀ (eigenvalue g)
        # keeps g / (g + λ) of B; and ‖B‖ against the plain mean of the B_k.
        eig = torch.linalg.eigvalsh(sol.a @ sol.a.T).clamp_min(0.0)
        self._shrink.append(float((eig / (eig + sol.lam)).min()) if sol.lam > 0 else 1.0)
        mean_b = padded_mean(pair.b, [wk * c for wk, c in zip(w, coefs, strict=True)], 1)
        denom = float(torch.linalg.norm(mean_b.double()))
        self._b_ratio.append(float(torch.linalg.norm(sol.b)) / denom if denom > 0 else 1.0)
        return sol.a, sol.b

    def finish(self, round_idx: int) -> None:
        """Keep and log this round's condition numbers, how many pairs needed λ, and the
        shrinkage: ``shrink_min`` (smallest ``g / (g + λ)`` over the eigenvalues g of A Aᵀ of
        every pair) and ``b_ratio_median`` (median over pairs of ‖B‖ / ‖Σ w_k B_k‖)."""
        warm, conds, lams = self._warm, self._conds, self._lams
        self._stats = {"warmup": float(warm)}
        if not conds:
            log.info("ridge round %d: FedAvg warm-up (%d rounds)", round_idx, self.warmup_rounds)
            return
        finite = [c for c in conds if math.isfinite(c)]
        self._stats.update(
            {
                "cond_max": max(conds),
                "cond_median": sorted(conds)[len(conds) // 2],
                "ridge_pairs": float(sum(1 for x in lams if x > 0)),
                "pairs": float(len(conds)),
                "shrink_min": min(self._shrink),
                "b_ratio_median": sorted(self._b_ratio)[len(self._b_ratio) // 2],
            }
        )
        log.info(
            "ridge round %d (%s): %d pairs, cond(AAᵀ) max %.4g, %d singular, λ=%g used on %d",
            round_idx,
            self.mode,
            len(conds),
            max(finite) if finite else float("inf"),
            len(conds) - len(finite),
            self.lam,
            int(self._stats["ridge_pairs"]),
        )

    def _client_b_scale(self, global_rank: int, rank: int) -> float:
        return self.scaling(global_rank) / self.scaling(rank)
