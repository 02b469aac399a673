"""Maths on sums of low-rank products ``Σ_k c_k B_k A_k``, accumulated in float64.

The server rules that look past the separate means of A and B (FedA²-LoRA, FlexLoRA,
FedEx-LoRA, FRLoRA) all need that sum or a function of it. Only FedEx-LoRA and FRLoRA need it
densely (their output is a dense base-weight delta); the ridge solve and the SVD work from the
factors, so they never allocate a d_out×d_in matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

RIDGE_MODES = ("tikhonov", "conditional")
"""``tikhonov``: always ``A Aᵀ + λI`` (UniFLoW's main results, Table 12); ``conditional``: λ
only when ``A Aᵀ`` is numerically singular (Eq. 13 read literally)."""

_RENAMED_MODES = {"ridge": "tikhonov", "paper": "conditional"}


def check_ridge_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`RIDGE_MODES`; else raise naming the fix."""
    if mode in RIDGE_MODES:
        return mode
    if mode in _RENAMED_MODES:
        raise ValueError(
            f"ridge mode {mode!r} was renamed: use mode={_RENAMED_MODES[mode]} "
            f"(the default is now tikhonov, λ always on)"
        )
    raise ValueError(f"ridge mode must be one of {RIDGE_MODES}, got {mode!r}")


@dataclass
class RidgeSolution:
    """The result of :func:`ridge_factors` for one LoRA pair.

    Attributes:
        a: ``A = Σ w_k pad(A_k)`` (r_max × d_in), accumulated in float64.
        b: The solved B (d_out × r_max), float64.
        cond: 2-norm condition number of ``A Aᵀ`` (``inf`` when singular).
        lam: The λ actually used (0.0 for a plain solve).
    """

    a: torch.Tensor
    b: torch.Tensor
    cond: float
    lam: float


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def sym_cond(gram: torch.Tensor) -> float:
    """Condition number of a symmetric positive semi-definite matrix from its eigenvalues."""
    eig = torch.linalg.eigvalsh(gram)
    lo, hi = float(eig[0]), float(eig[-1])
    if hi <= 0.0 or lo <= hi * torch.finfo(gram.dtype).eps:
        return float("inf")
    return hi / lo


def ridge_factors(
    a_list: Sequence[torch.Tensor],
    b_list: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    lam: float = 0.1,
    mode: str = "tikhonov",
    cond_threshold: float = 1e4,
    b_coefs: Sequence[float] | None = None,
) -> RidgeSolution:
    """FedA²-LoRA for one pair: average A, then solve B against ``U = Σ w_k c_k B_k A_k``.

    ``B = U Aᵀ (A Aᵀ + λI)⁻¹`` minimises ``‖B A − U‖²_F + λ‖B‖²_F``. The right-hand side is
    formed as ``U Aᵀ = Σ w_k c_k B_k (A_k Aᵀ)`` — O(K·r²·(d_in + d_out)) work and memory of
    O(r·(d_in + d_out)) — instead of the paper's O(K·r·d_in·d_out) route through U. Factors
    of rank r_k < r_max are zero-padded (rows of A_k, columns of B_k), which the products do
    implicitly.

    Args:
        a_list: The clients' A_k (r_k × d_in).
        b_list: The clients' B_k (d_out × r_k).
        weights: Aggregation weights w_k (summing to one).
        lam: Tikhonov λ > 0 (used always in ``tikhonov`` mode, as the fallback in
            ``conditional`` mode).
        mode: ``"tikhonov"``: always ``A Aᵀ + λI`` (the paper's main results);
            ``"conditional"``: a plain solve when ``cond(A Aᵀ) ≤ cond_threshold``, the ridge
            solve otherwise (Eq. 13 with "invertible" made numerical).
        cond_threshold: Largest condition number treated as invertible in ``conditional``
            mode.
        b_coefs: Extra per-client factors c_k on B_k (heterogeneous ranks: ``s_k / s_max``);
            ones when None.

    Returns:
        The averaged A, the solved B, the condition number and the λ used.
    """
    check_ridge_mode(mode)
    if not lam > 0.0:
        raise ValueError(
            f"ridge lambda must be > 0 (the fallback when A Aᵀ is singular), got {lam}"
        )
    coefs = [1.0] * len(a_list) if b_coefs is None else list(b_coefs)
    a, rhs = _mean_a_and_rhs(a_list, b_list, weights, coefs)
    gram = a @ a.T
    cond = sym_cond(gram)
    use = 0.0 if (mode == "conditional" and cond <= cond_threshold) else float(lam)
    b = _solve_spd_right(rhs, gram, use)
    if b is None:  # round-off made the "well-conditioned" Gram indefinite: take the ridge
        use = float(lam)
        b = _solve_spd_right(rhs, gram, use)
    if b is None:
        raise RuntimeError(f"A Aᵀ + {lam}·I is not positive definite (cond {cond:.3g})")
    return RidgeSolution(a=a, b=b, cond=cond, lam=use)


def _mean_a_and_rhs(
    a_list: Sequence[torch.Tensor],
    b_list: Sequence[torch.Tensor],
    weights: Sequence[float],
    coefs: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``A = Σ w_k pad(A_k)`` and ``U Aᵀ = Σ w_k c_k B_k (A_k Aᵀ)``, both returned in float64."""
    # The d-sized products run in the factors' own precision (float32 at least): converting
    # every factor to float64 allocates a copy of each and doubles the memory traffic, which
    # made this step 2-3x slower in bench_ridge.py; the float32 error is that of the dense route.
    # The r×r system — where conditioning matters — is formed and solved in float64.
    work = torch.promote_types(a_list[0].dtype, torch.float32)
    r_max = max(a_k.shape[0] for a_k in a_list)
    a = torch.zeros((r_max, a_list[0].shape[1]), dtype=torch.float64)
    for a_k, w in zip(a_list, weights, strict=True):
        a[: a_k.shape[0]].add_(a_k.detach(), alpha=float(w))
    a_work = a.to(work)
    rhs = torch.zeros((b_list[0].shape[0], r_max), dtype=work)
    for a_k, b_k, w, c in zip(a_list, b_list, weights, coefs, strict=True):
        # B_k (A_k Aᵀ): a d_out×r_k by r_k×r_max product, accumulated in place.
        m_k = a_k.detach().to(work) @ a_work.T
        rhs.addmm_(b_k.detach().to(work), m_k, alpha=float(w) * float(c))
    return a, rhs.to(torch.float64)


def _solve_spd_right(rhs: torch.Tensor, gram: torch.Tensor, lam: float) -> torch.Tensor | None:
    """``X`` with ``X (gram + λI) = rhs`` by Cholesky; None when the matrix is not PD."""
    m = gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype)
    chol, info = torch.linalg.cholesky_ex(m)
    if int(info) != 0:
        return None
    # (gram + λI) is symmetric, so X (gram + λI) = rhs  ⇔  (gram + λI) Xᵀ = rhsᵀ.
    return torch.cholesky_solve(rhs.T, chol).T


def stacked_factors(
    a_list: Sequence[torch.Tensor], b_list: Sequence[torch.Tensor], coefs: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B_cat, A_cat)`` with ``B_cat A_cat = Σ_k c_k B_k A_k`` (ranks may differ).

    ``B_cat = [c_1 B_1, …, c_K B_K]`` (d_out × Σ r_k), ``A_cat = [A_1; …; A_K]``.
    """
    b_cat = torch.cat([_f64(b) * float(c) for b, c in zip(b_list, coefs, strict=True)], dim=1)
    a_cat = torch.cat([_f64(a) for a in a_list], dim=0)
    return b_cat, a_cat


def product_sum(
    a_list: Sequence[torch.Tensor], b_list: Sequence[torch.Tensor], coefs: Sequence[float]
) -> torch.Tensor:
    """Dense ``Σ_k c_k B_k A_k`` (d_out × d_in, float64) as one matmul of stacked factors."""
    b_cat, a_cat = stacked_factors(a_list, b_list, coefs)
    return b_cat @ a_cat


def factored_svd(
    a_list: Sequence[torch.Tensor], b_list: Sequence[torch.Tensor], coefs: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``U S Vᵀ`` of ``W = Σ_k c_k B_k A_k`` without forming W.

    With ``B_cat = Q_b R_b`` and ``A_catᵀ = Q_a R_a`` (reduced QR), ``W = Q_b (R_b R_aᵀ) Q_aᵀ``;
    the SVD of the small core ``R_b R_aᵀ`` (at most Σr_k square) gives W's exactly, since
    Q_b and Q_a have orthonormal columns.

    Returns:
        ``(U, S, Vh)`` in float64 with ``min(d_out, d_in, Σ r_k)`` components, S descending.
    """
    b_cat, a_cat = stacked_factors(a_list, b_list, coefs)
    q_b, r_b = torch.linalg.qr(b_cat)
    q_a, r_a = torch.linalg.qr(a_cat.T)
    u_c, s, vh_c = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
    return q_b @ u_c, s, vh_c @ q_a.T


def svd_redistribute(
    a_list: Sequence[torch.Tensor],
    b_list: Sequence[torch.Tensor],
    coefs: Sequence[float],
    rank: int,
    scaling: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors of rank ``rank`` whose ``scaling · B A`` is the best approximation of W.

    ``W = Σ_k c_k B_k A_k = U S Vᵀ``; ``B = U[:, :rank] diag(S[:rank]) / scaling`` and
    ``A = Vᵀ[:rank]`` (Eckart–Young: the best rank-``rank`` approximation in Frobenius norm).
    Components beyond W's size are zero.

    Returns:
        ``(A, B)`` in float64.
    """
    u, s, vh = factored_svd(a_list, b_list, coefs)
    k = min(rank, s.shape[0])
    a = torch.zeros((rank, vh.shape[1]), dtype=torch.float64)
    b = torch.zeros((u.shape[0], rank), dtype=torch.float64)
    a[:k] = vh[:k]
    b[:, :k] = u[:, :k] * (s[:k] / scaling)
    return a, b


def pair_means(
    a_list: Sequence[torch.Tensor], b_list: Sequence[torch.Tensor], weights: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Ā, B̄) = (Σ w_k A_k, Σ w_k B_k)`` in float64 (equal ranks)."""
    a = sum(float(w) * a_k.to(torch.float64) for a_k, w in zip(a_list, weights, strict=True))
    b = sum(float(w) * b_k.to(torch.float64) for b_k, w in zip(b_list, weights, strict=True))
    return a, b  # type: ignore[return-value]


def fedex_residual(
    a_list: Sequence[torch.Tensor],
    b_list: Sequence[torch.Tensor],
    weights: Sequence[float],
    scaling: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FedEx-LoRA for one pair: ``Ā``, ``B̄`` and ``s·(Σ w_k B_k A_k − B̄ Ā)``.

    The residual has nn.Linear's weight layout (d_out × d_in), the layout of ``B @ A``; the
    public FedEx-LoRA code transposes it, which is only right for GPT-2's Conv1D.

    Returns:
        ``(Ā, B̄, residual)`` in float64; ``W0 + residual + s·B̄Ā = W0 + s·Σ w_k B_k A_k``.
    """
    a, b = pair_means(a_list, b_list, weights)
    # One matmul of stacked factors: [w_1 B_1, …, w_K B_K, −B̄] · [A_1; …; A_K; Ā].
    residual = product_sum([*a_list, a], [*b_list, b], [*weights, -1.0])
    return a, b, residual * scaling


def frlora_base_delta(
    a_mean: torch.Tensor,
    b_mean: torch.Tensor,
    a0: torch.Tensor,
    b0: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    """``s·(B̄Ā − B0A0)`` (d_out × d_in, float64): what the base weight absorbs each round.

    After ``W_base += s(B̄Ā − B0A0)`` and the reset of the adapter to (A0, B0), the model
    ``W_base + s·B0A0`` equals ``W_base(old) + s·B̄Ā``: the averaged adapter's function.
    """
    return product_sum([a_mean, a0], [b_mean, b0], [scaling, -scaling])
