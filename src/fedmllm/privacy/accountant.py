"""ε of the Gaussian mechanisms the run applies, from Opacus's RDP accountant.

Every mechanism here is a subsampled Gaussian mechanism composed over steps: DP-SGD's local
steps (sampling rate q = batch / client train size), client-level DP's rounds (q = clients per
round / clients in central DP; q = 1 in local DP). The accountant is Opacus's
``RDPAccountant``; σ for a target ε comes from Opacus's ``get_noise_multiplier``.
"""

from __future__ import annotations

import math
import warnings

from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε after ``steps`` compositions of the Gaussian mechanism subsampled at ``sample_rate``.

    Returns ``inf`` when there is no noise, 0 when nothing was released.
    """
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    acc = RDPAccountant()
    acc.history = [(float(noise_multiplier), float(min(sample_rate, 1.0)), int(steps))]
    with warnings.catch_warnings():  # "optimal order is the largest alpha": a looser bound only
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta))


def noise_for_epsilon(target_epsilon: float, sample_rate: float, steps: int, delta: float) -> float:
    """The σ at which ``steps`` steps at ``sample_rate`` spend ``target_epsilon`` at ``delta``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=min(sample_rate, 1.0),
                steps=steps,
                accountant="rdp",
            )
        )


def client_dp_noise(
    target_epsilon: float | None,
    noise_multiplier: float,
    noise_at: str,
    sample_rate: float,
    rounds: int,
    delta: float,
) -> float:
    """Client-level DP's σ: ``noise_multiplier``, or the σ that spends ``target_epsilon`` in
    ``rounds`` rounds (central: at the client sampling rate; local: every round, q = 1, with
    the replace-one sensitivity 2S, so twice the central σ at q = 1)."""
    if target_epsilon is None:
        return float(noise_multiplier)
    if noise_at == "client":
        return 2.0 * noise_for_epsilon(target_epsilon, 1.0, rounds, delta)
    return noise_for_epsilon(target_epsilon, sample_rate, rounds, delta)


def client_dp_epsilon(
    noise_multiplier: float, noise_at: str, sample_rate: float, rounds: int, delta: float
) -> float:
    """ε of client-level DP after ``rounds`` releases.

    Central (noise at the server): add/remove-one-client adjacency, sensitivity S, rounds
    subsampled at the client sampling rate. Local (noise at the client): the client's own
    releases, replace-one adjacency (any two clipped updates differ by at most 2S), so σ/2
    at q = 1 over the rounds the client took part in.
    """
    if noise_at == "client":
        return epsilon(noise_multiplier / 2.0, 1.0, rounds, delta)
    return epsilon(noise_multiplier, sample_rate, rounds, delta)
