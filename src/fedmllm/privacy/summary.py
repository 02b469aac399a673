"""The privacy block of ``results.json``: settings and each client's ε, read off the history.

DP-SGD clients report their own ε after every local update (``dp_epsilon`` in their train
metrics); central client-level DP's ε is the server's (``server.dp_epsilon``), the same for
every client; local client-level DP's ε follows from the rounds each client took part in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fedmllm.privacy.accountant import client_dp_epsilon, client_dp_noise
from fedmllm.privacy.settings import PrivacyConfig


def _last_train_metric(history: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for entry in history:
        for cid, metrics in (entry.get("train") or {}).items():
            if key in metrics:
                out[str(cid)] = float(metrics[key])
    return out


def _rounds_taken(history: Sequence[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in history:
        for cid in entry.get("train") or {}:
            out[str(cid)] = out.get(str(cid), 0) + 1
    return out


def privacy_summary(
    privacy: PrivacyConfig | None, history: Sequence[dict[str, Any]], rounds: int
) -> dict[str, Any]:
    """``{mode, settings..., epsilon, epsilon_per_client}``; ε is ``inf`` without DP.

    Args:
        privacy: The run's settings (None: no DP).
        history: The run's round history (``Simulator.history``).
        rounds: The run's planned rounds (σ of a target ε in local client DP).
    """
    privacy = privacy or PrivacyConfig()
    out: dict[str, Any] = privacy.describe()
    per_client: dict[str, float] = {}
    if privacy.mode == "dp_sgd":
        per_client = _last_train_metric(history, "dp_epsilon")
        out["noise_multiplier_per_client"] = _last_train_metric(history, "dp_noise_multiplier")
    elif privacy.mode == "dp_client" and privacy.noise_at == "server":
        eps = [
            float(e["server"]["dp_epsilon"]) for e in history if "dp_epsilon" in e.get("server", {})
        ]
        per_client = {cid: eps[-1] if eps else 0.0 for cid in _rounds_taken(history)}
    elif privacy.mode == "dp_client":
        z = client_dp_noise(
            privacy.target_epsilon, privacy.noise_multiplier, "client", 1.0, rounds, privacy.delta
        )
        out["noise_multiplier_used"] = z
        per_client = {
            cid: client_dp_epsilon(z, "client", 1.0, n, privacy.delta)
            for cid, n in _rounds_taken(history).items()
        }
    out["epsilon_per_client"] = per_client
    out["epsilon"] = max(per_client.values()) if per_client else math.inf
    if not privacy.enabled:
        out["epsilon"] = math.inf
    return out
