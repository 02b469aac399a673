"""FedA² for VeRA: ``d`` averaged, ``b`` solved by a ridge restricted to VeRA's form.

A VeRA client k applies ``ΔW_k = Λ_{b_k} B Λ_{d_k} A`` with the shared frozen ``A`` (r × d_in)
and ``B`` (d_out × r). Read as a low-rank pair, its "A" is ``Λ_{d_k} A`` and its "B" is
``Λ_{b_k} B``. FedA²'s first step, averaging the A side, stays inside VeRA's form exactly:
``Σ w_k Λ_{d_k} A = Λ_{d̄} A`` with ``d̄ = Σ w_k d_k``. FedA²'s second step, the ridge for B
against ``U = Σ w_k ΔW_k``, is solved over the B side VeRA can express, ``Λ_b B``:

    b = argmin_b ‖Λ_b B Λ_{d̄} A − U‖²_F + λ ‖Λ_b B‖²_F

which separates by output row i (row ``B_i`` of B, ``v_i = B_i Λ_{d̄} A``):

    b_i = ⟨U_i, v_i⟩ / (‖v_i‖² + λ ‖B_i‖²),
    ⟨U_i, v_i⟩ = Σ_k w_k b_{k,i} · B_i Λ_{d_k} G Λ_{d̄} B_iᵀ,   ‖v_i‖² = B_i Λ_{d̄} G Λ_{d̄} B_iᵀ,

with ``G = A Aᵀ`` (r × r): O(K·d_out·r + r²·d_in) work, no d_out × d_in matrix. An
unconstrained B (the LoRA solve) would leave VeRA's family, so this is the closest update
VeRA can carry, not the LoRA solution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmllm.aggregators.lowrank import check_ridge_mode


def vera_ridge(
    d_list: Sequence[torch.Tensor],
    b_list: Sequence[torch.Tensor],
    weights: Sequence[float],
    vera_a: torch.Tensor,
    vera_b: torch.Tensor,
    *,
    lam: float = 0.1,
    mode: str = "tikhonov",
    cond_threshold: float = 1e4,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(d̄, b, rows that used λ)`` for one VeRA layer, in float64.

    Args:
        d_list: The clients' ``d_k`` (r).
        b_list: The clients' ``b_k`` (d_out).
        weights: Aggregation weights w_k (summing to one).
        vera_a: The layer's frozen ``A`` (r × d_in).
        vera_b: The layer's frozen ``B`` (d_out × r).
        lam: λ > 0.
        mode: ``"tikhonov"``: λ on every row; ``"conditional"``: λ only on rows whose ``‖v_i‖²`` is
            below ``max_i ‖v_i‖² / cond_threshold`` (numerically zero), a plain solve elsewhere.
        cond_threshold: See ``mode``.

    Raises:
        ValueError: ``lam`` not positive or an unknown mode.
    """
    if not lam > 0:
        raise ValueError(f"ridge lam must be > 0, got {lam}")
    check_ridge_mode(mode)
    a, bb = vera_a.detach().double(), vera_b.detach().double()
    d_bar = sum(float(w) * d.detach().double() for w, d in zip(weights, d_list, strict=True))
    gram = a @ a.T
    h = (bb * d_bar) @ gram  # row i: B_i Λ_d̄ G (G symmetric)
    num = torch.zeros(bb.shape[0], dtype=torch.float64)
    for w, d_k, b_k in zip(weights, d_list, b_list, strict=True):
        num += float(w) * b_k.detach().double() * ((bb * d_k.detach().double()) * h).sum(1)
    den0 = ((bb * d_bar) * h).sum(1)
    reg = float(lam) * (bb * bb).sum(1)
    if mode == "tikhonov":
        use = torch.ones_like(den0, dtype=torch.bool)
    else:
        use = den0 <= den0.max().clamp_min(0.0) / cond_threshold
    den = torch.where(use, den0 + reg, den0)
    return d_bar, num / den, int(use.sum())
