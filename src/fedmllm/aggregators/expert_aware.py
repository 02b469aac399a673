"""Expert-aware aggregation (X-FLoRA): every tensor averaged over exactly the clients that sent it.

Clients send only what they trained: the experts of the modalities they hold, the shared
expert, and whatever other adapter their data reached (a text-only client sends no vision-side
tensor). The server therefore averages key by key over the senders of that key and keeps the
global value of a key nobody sent, so a client never overwrites an expert it did not train.

Weights, with ``weighting="samples"``:

- a modality expert's key (``...experts.<m>...`` whose senders report ``modality_frac/<m>``):
  ``n_k · f_k^m``, where ``n_k`` is the client's training-set size and ``f_k^m`` the fraction
  of its training samples of modality ``m`` — "weighted by their samples of that modality";
- any other key (shared expert, plain LoRA, projector, Fed-MoLE's routed experts): ``n_k``.

With ``weighting="uniform"`` every sender of a key weighs the same.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from fedmllm import compat
from fedmllm.aggregators.base import Aggregator
from fedmllm.aggregators.functional import client_weights, weighted_mean
from fedmllm.types import AdapterState, ClientUpdate

# Mirrors the parameter layout of fedmllm.lora.modality_expert (aggregators may not import
# adapter code); a test checks both against a real layer's keys.
EXPERT_KEY = re.compile(r"(?:^|\.)experts\.([^.]+)\.")
FRACTION_PREFIX = "modality_frac/"


def key_modality(key: str) -> str | None:
    """The modality of an expert's key, ``None`` for any other key."""
    match = EXPERT_KEY.search(key)
    return match.group(1) if match else None


def sender_weights(
    senders: Sequence[ClientUpdate], modality: str | None, weighting: str = "samples"
) -> torch.Tensor:
    """Normalised weights of the clients that sent a key of ``modality`` (None: not an expert).

    An ``experts.<m>`` key is a modality expert when its senders report ``modality_frac/<m>``;
    when none does, it is another kind of expert (Fed-MoLE's routed ``experts.<i>``) and is
    weighted like any other key.

    Raises:
        KeyError: Some senders of an expert key report its modality's fraction and others not.
        ValueError: A sender reports a fraction outside (0, 1].
    """
    name = FRACTION_PREFIX + str(modality)
    if weighting == "uniform" or modality is None or not any(name in u.metrics for u in senders):
        return client_weights([u.num_examples for u in senders], weighting)
    counts = []
    for u in senders:
        if name not in u.metrics:
            raise KeyError(
                f"client {u.client_id!r} sent the {modality!r} expert but its update metrics "
                f"hold no {name!r} (sent by method=modality_expert); got {sorted(u.metrics)}"
            )
        frac = float(u.metrics[name])
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"client {u.client_id!r}: {name} = {frac}, expected in (0, 1]")
        counts.append(u.num_examples * frac)
    return client_weights(counts, "samples")


def _plan(updates: Sequence[ClientUpdate]) -> dict[tuple[tuple[int, ...], str | None], list[str]]:
    """Keys grouped by (indices of the clients that sent them, expert modality)."""
    order: dict[str, None] = {}
    for u in updates:
        order.update(dict.fromkeys(u.state))
    plan: dict[tuple[tuple[int, ...], str | None], list[str]] = {}
    for key in order:
        senders = tuple(i for i, u in enumerate(updates) if key in u.state)
        plan.setdefault((senders, key_modality(key)), []).append(key)
    return plan


class ExpertAware(Aggregator):
    """Key-wise weighted mean over the senders of each key; unsent keys keep their value.

    Args:
        weighting: ``"samples"`` (by the samples behind each tensor) or ``"uniform"``.
    """

    name = "expert_aware"
    display_name = "Expert-aware"
    report_group = "Other"
    provides = frozenset({compat.PARTIAL_UPDATES})

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        out = dict(global_state)
        for (senders, modality), keys in _plan(updates).items():
            unknown = [k for k in keys if global_state and k not in global_state]
            if unknown:
                raise KeyError(f"clients sent keys the global state lacks: {unknown[:5]}")
            clients = [updates[i] for i in senders]
            weights = sender_weights(clients, modality, self.weighting)
            out.update(weighted_mean([{k: u.state[k] for k in keys} for u in clients], weights))
        return out
