"""Stateless, seed-derived randomness for the round loop.

Every draw is a pure function of (seed, round, client, counter), so a resumed run draws
exactly what an uninterrupted one would without checkpointing any sampler state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _generator(*parts: int) -> torch.Generator:
    g = torch.Generator()
    seed = 0
    for p in parts:  # a simple mixing so (1, 2) and (2, 1) differ
        seed = (seed * 1_000_003 + int(p) + 1) % (2**62)
    g.manual_seed(seed)
    return g


def sample_clients(
    client_ids: Sequence[str], round_idx: int, seed: int, per_round: int | float | None
) -> list[str]:
    """Pick the clients of one round.

    Args:
        client_ids: All training clients, in a fixed order.
        round_idx: Zero-based round.
        seed: Run seed.
        per_round: ``None`` or ``1.0`` for all clients, a float in (0, 1) for a fraction
            (rounded up, at least one), an int for a count.

    Returns:
        The chosen ids, in the order of ``client_ids`` (the shared engine trains them in turn).
    """
    k = len(client_ids)
    if per_round is None:
        n = k
    elif isinstance(per_round, float) and per_round <= 1.0:
        if per_round <= 0:
            raise ValueError(
                f"federation.clients_per_round fraction must be in (0, 1], got {per_round}"
            )
        n = max(1, math.ceil(per_round * k))
    else:
        n = int(per_round)
        if not 1 <= n <= k:
            raise ValueError(f"federation.clients_per_round must be between 1 and {k}, got {n}")
    if n == k:
        return list(client_ids)
    chosen = torch.randperm(k, generator=_generator(seed, 7, round_idx))[:n].sort().values
    return [client_ids[i] for i in chosen.tolist()]


def batch_indices(
    num_samples: int, batch_size: int, batch_idx: int, seed: int, client_idx: int
) -> list[int]:
    """Indices of a client's ``batch_idx``-th training batch over an endless shuffled stream.

    Position p of the stream is element ``p % n`` of the permutation of epoch ``p // n``;
    permutations are seeded by (seed, client, epoch), so batch b is known without replaying
    batches 0..b-1.
    """
    if num_samples <= 0:
        raise ValueError("a training client needs at least one sample")
    out: list[int] = []
    perms: dict[int, list[int]] = {}
    for p in range(batch_idx * batch_size, (batch_idx + 1) * batch_size):
        epoch, offset = divmod(p, num_samples)
        if epoch not in perms:
            perms[epoch] = torch.randperm(
                num_samples, generator=_generator(seed, 11, client_idx, epoch)
            ).tolist()
        out.append(perms[epoch][offset])
    return out


def cosine_lr(
    base_lr: float, step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0
) -> float:
    """Linear warm-up then cosine annealing to ``min_ratio * base_lr`` over ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def local_seed(seed: int, round_idx: int, client_idx: int) -> int:
    """Seed of the global torch generator for one client's local update of one round.

    Dropout (and any other draw inside a local update) then depends on (seed, round, client)
    only, not on which clients trained before in the same process: the in-process simulator
    and a Flower node that trains only its own client draw the same numbers.
    """
    return int(torch.randint(0, 2**62, (1,), generator=_generator(seed, 13, round_idx, client_idx)))
