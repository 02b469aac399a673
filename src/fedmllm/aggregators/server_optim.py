"""Server optimiser steps of adaptive federated optimisation (Reddi et al., FedOpt).

The pseudo-gradient of a round is ``Δ = weighted-mean(x_k) − x``; the server keeps a first
moment m and a second moment v per tensor and moves ``x += η_t · m / (√v + τ)``:

- Adam:    ``v ← β2 v + (1 − β2) Δ²``
- Yogi:    ``v ← v − (1 − β2) Δ² sign(v − Δ²)``
- Adagrad: ``v ← v + Δ²``

with ``m ← β1 m + (1 − β1) Δ`` in all three and m = v = 0 at the start. ``η_t`` is η unless
bias correction is asked for (see :func:`step_size`).
"""

from __future__ import annotations

import math

import torch

SERVER_RULES = ("adam", "yogi", "adagrad")
BIAS_CORRECTIONS = ("none", "adam", "flower")


def step_size(eta: float, beta_1: float, beta_2: float, step: int, bias_correction: str) -> float:
    """The learning rate η_t of server step ``step`` (1 for the first step).

    Args:
        eta: Server learning rate η.
        beta_1: First-moment decay.
        beta_2: Second-moment decay.
        step: How many server steps have been taken, this one included.
        bias_correction: ``"none"`` (η, as Reddi et al. and Flower's FedYogi/FedAdagrad);
            ``"adam"`` (Kingma & Ba: ``η √(1 − β2^t) / (1 − β1^t)``); ``"flower"`` (what
            Flower's FedAdam computes: the same with ``t = server_round + 1``, i.e. one
            step ahead, because Flower's rounds start at 1).

    Returns:
        η_t.
    """
    if bias_correction not in BIAS_CORRECTIONS:
        raise ValueError(
            f"bias_correction must be one of {BIAS_CORRECTIONS}, got {bias_correction!r}"
        )
    if bias_correction == "none":
        return eta
    t = step + 1 if bias_correction == "flower" else step
    return eta * math.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)


def server_step(
    x: torch.Tensor,
    delta: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    *,
    rule: str,
    lr: float,
    beta_1: float,
    beta_2: float,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One FedAdam / FedYogi / FedAdagrad update of one tensor (pure: inputs unchanged).

    Args:
        x: Current global tensor.
        delta: Pseudo-gradient ``mean(x_k) − x`` (same shape).
        m: First moment (zeros at the start).
        v: Second moment (zeros at the start).
        rule: ``"adam"``, ``"yogi"`` or ``"adagrad"``.
        lr: η_t from :func:`step_size`.
        beta_1: First-moment decay (0 gives Flower's FedAdagrad).
        beta_2: Second-moment decay (unused by Adagrad).
        tau: Adaptivity floor τ added to √v.

    Returns:
        ``(x_new, m_new, v_new)``.
    """
    if rule not in SERVER_RULES:
        raise ValueError(f"server rule must be one of {SERVER_RULES}, got {rule!r}")
    m_new = beta_1 * m + (1.0 - beta_1) * delta
    sq = delta * delta
    if rule == "adam":
        v_new = beta_2 * v + (1.0 - beta_2) * sq
    elif rule == "yogi":
        v_new = v - (1.0 - beta_2) * sq * torch.sign(v - sq)
    else:
        v_new = v + sq
    x_new = x + lr * m_new / (torch.sqrt(v_new) + tau)
    return x_new, m_new, v_new
