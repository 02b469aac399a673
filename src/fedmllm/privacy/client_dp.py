"""Client-level DP (McMahan et al., 2018): clip each update, add Gaussian noise.

A client's update is its shared state minus the state it received, taken over all shared
tensors together (for LoRA the factors A and B, not the product B·A). It is scaled to norm at
most S. Noise is then added either at the client (local DP: N(0, (σS)²) on every coordinate it
sends) or at the server (central DP, as Flower's ``DifferentialPrivacyServerSideFixedClipping``
does): the server adds noise to each arrived update such that the rule's weighted mean carries
N(0, (σ·S·max_k w_k)²) per coordinate — σS/m for m uniformly weighted clients, Flower's std.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fedmllm.privacy.dp_sgd import EPS, global_norm
from fedmllm.types import AdapterState


def update_norm(state: AdapterState, reference: AdapterState) -> float:
    """``‖state − reference‖₂`` over all keys of ``state`` (float64)."""
    return float(global_norm([state[k].double() - reference[k].double() for k in state]))


def clip_update(
    state: AdapterState, reference: AdapterState, bound: float
) -> tuple[AdapterState, float]:
    """``reference + (state − reference)·min(1, S / ‖state − reference‖)``, and the norm.

    Raises:
        KeyError: ``reference`` lacks a key of ``state``.
    """
    missing = sorted(set(state) - set(reference))
    if missing:
        raise KeyError(f"client DP: no reference tensor for {missing[:3]}")
    norm = update_norm(state, reference)
    scale = min(1.0, bound / (norm + EPS))
    out = {}
    for k, v in state.items():
        ref = reference[k].to(v.device, torch.float64)
        out[k] = (ref + (v.double() - ref) * scale).to(v.dtype)
    return out, norm


def add_noise(state: AdapterState, std: float, generator: torch.Generator) -> AdapterState:
    """``state`` + N(0, std²) on every floating coordinate (keys in sorted order)."""
    if std <= 0:
        return dict(state)
    out = {}
    for k in sorted(state):
        v = state[k]
        if not v.is_floating_point():
            out[k] = v
            continue
        noise = torch.randn(v.shape, generator=generator, dtype=torch.float64)
        out[k] = (v.double() + std * noise.to(v.device)).to(v.dtype)
    return out


def central_noise_std(clip: float, noise_multiplier: float, weights: Sequence[float]) -> float:
    """Per-update noise std that leaves N(0, (σ·S·max w)²) on the weighted mean Σ w_k x_k.

    With independent noise of std s on every update the mean carries s·√(Σ w_k²); the mean's
    sensitivity to one client is S·max w_k.
    """
    w = [float(x) for x in weights]
    if not w:
        return 0.0
    return noise_multiplier * clip * max(w) / math.sqrt(sum(x * x for x in w))


def noise_generator(seed: int) -> torch.Generator:
    """A CPU generator for client-DP noise, seeded (the same noise in any process)."""
    return torch.Generator().manual_seed(int(seed) % (2**63))
