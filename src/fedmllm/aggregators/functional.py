"""Pure aggregation maths: functions of tensors, no state, no models.

Kept apart from the rule classes (as Flower's ``aggregate.py``) so every formula can be
tested on three small tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from fedmllm.lora.rank import A_SUFFIX, B_SUFFIX
from fedmllm.types import AdapterState, ClientUpdate


def client_weights(num_examples: Sequence[int], weighting: str = "samples") -> torch.Tensor:
    """Normalised aggregation weights.

    Args:
        num_examples: Each client's training-set size n_k.
        weighting: ``"samples"`` (w_k = n_k / Σ n) or ``"uniform"`` (w_k = 1/K).

    Returns:
        A float64 vector summing to one.
    """
    if len(num_examples) == 0:
        raise ValueError("cannot weight an empty set of clients")
    if weighting == "uniform":
        return torch.full((len(num_examples),), 1.0 / len(num_examples), dtype=torch.float64)
    if weighting != "samples":
        raise ValueError(f"weighting must be 'samples' or 'uniform', got {weighting!r}")
    n = torch.tensor([float(x) for x in num_examples], dtype=torch.float64)
    if (n < 0).any() or n.sum() <= 0:
        raise ValueError(
            f"sample counts must be non-negative with a positive sum, got {list(num_examples)}"
        )
    return n / n.sum()


def common_keys(states: Sequence[AdapterState]) -> list[str]:
    """The keys of the first state, after checking every state has exactly these keys.

    Raises:
        ValueError: No states.
        KeyError: Two clients sent different key sets (a few differing keys are named).
    """
    if not states:
        raise ValueError("no client states to aggregate")
    keys = set(states[0])
    for s in states[1:]:
        if set(s) != keys:
            missing = sorted(keys.symmetric_difference(s))[:5]
            raise KeyError(f"clients sent different keys, e.g. {missing}")
    return list(states[0])


def weighted_mean(states: Sequence[AdapterState], weights: torch.Tensor) -> AdapterState:
    """Key-wise ``Σ_k w_k · state_k`` over the keys every state holds.

    Accumulates in float64 so the order of clients does not change the result beyond
    the final cast, then casts back to each tensor's own dtype.
    """
    if len(states) != len(weights):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    common_keys(states)
    out: AdapterState = {}
    for key in states[0]:
        ref = states[0][key]
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for s, w in zip(states, weights, strict=True):
            if s[key].shape != ref.shape:
                raise ValueError(
                    f"shape mismatch for {key}: {tuple(s[key].shape)} vs {tuple(ref.shape)}"
                )
            acc += w.item() * s[key].to(torch.float64)
        out[key] = acc.to(ref.dtype)
    return out


# --------------------------------------------------------------------------- LoRA pairs
LORA_A = A_SUFFIX
LORA_B = B_SUFFIX
BASE_WEIGHT = "base_layer.weight"


def lora_pairs(keys: Iterable[str]) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Split state keys into LoRA pairs and the keys that belong to no pair.

    A pair is ``<prefix>lora_A.weight`` (r×d_in) with ``<prefix>lora_B.weight`` (d_out×r).
    A lone A or B (FedSA-LoRA sends only A, FFA-LoRA only B) is not a pair.

    Args:
        keys: The keys of one state.

    Returns:
        ``({prefix: (a_key, b_key)}, other_keys)``, both in the keys' order.
    """
    keys = list(keys)
    present = set(keys)
    pairs: dict[str, tuple[str, str]] = {}
    for key in keys:
        if key.endswith(LORA_A):
            prefix = key[: -len(LORA_A)]
            if prefix + LORA_B in present:
                pairs[prefix] = (key, prefix + LORA_B)
    paired = {k for ab in pairs.values() for k in ab}
    return pairs, [k for k in keys if k not in paired]


def base_weight_key(prefix: str) -> str:
    """``<module path>.base_layer.weight`` for the pair ``<module path>.lora_A.weight``."""
    return prefix + BASE_WEIGHT


def pair_ranks(states: Sequence[AdapterState], a_key: str, b_key: str) -> list[int]:
    """Each client's rank of one pair, after checking the factor shapes agree.

    Raises:
        KeyError: A client lacks one of the two keys.
        ValueError: A is not 2-D, A's rows differ from B's columns, or clients disagree on
            d_in / d_out (the key and the shapes are named).
    """
    ranks: list[int] = []
    ref: tuple[int, int] | None = None
    for i, s in enumerate(states):
        if a_key not in s or b_key not in s:
            raise KeyError(f"client #{i} lacks {a_key!r} or {b_key!r}")
        a, b = s[a_key], s[b_key]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise ValueError(
                f"{a_key}: expected A (r, d_in) and B (d_out, r), got {tuple(a.shape)} and "
                f"{tuple(b.shape)} from client #{i}"
            )
        dims = (int(b.shape[0]), int(a.shape[1]))
        if ref is not None and dims != ref:
            raise ValueError(f"{a_key}: clients disagree on (d_out, d_in): {ref} vs {dims}")
        ref = dims
        ranks.append(int(a.shape[0]))
    return ranks


def require_equal_ranks(rule: str, key: str, ranks: Sequence[int]) -> None:
    """Refuse heterogeneous ranks for rules that cannot combine them."""
    if len(set(ranks)) > 1:
        raise ValueError(
            f"aggregator {rule!r} cannot combine heterogeneous LoRA ranks: {key} arrived with "
            f"ranks {list(ranks)}; use fedavg, ridge or flexlora for mixed ranks"
        )


def resize_rank(a: torch.Tensor, b: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``rank`` components of a pair (rows of A, columns of B), zero-padded if short.

    Zero-padding adds rows of A and columns of B that contribute nothing to ``B·A``; truncation
    keeps the leading components (for FlexLoRA those of the largest singular values).
    """
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    r = a.shape[0]
    if rank <= r:
        return a[:rank].clone(), b[:, :rank].clone()
    a_out = torch.zeros((rank, a.shape[1]), dtype=a.dtype)
    b_out = torch.zeros((b.shape[0], rank), dtype=b.dtype)
    a_out[:r], b_out[:, :r] = a, b
    return a_out, b_out


def padded_mean(
    factors: Sequence[torch.Tensor], weights: Sequence[float], dim: int
) -> torch.Tensor:
    """``Σ_k w_k · pad(F_k)`` in float64, each factor zero-padded along ``dim`` to the largest.

    Args:
        factors: A-factors (pad rows, ``dim=0``) or B-factors (pad columns, ``dim=1``).
        weights: One weight per factor (already including any rescaling).
        dim: The rank dimension.
    """
    size = max(f.shape[dim] for f in factors)
    shape = list(factors[0].shape)
    shape[dim] = size
    acc = torch.zeros(shape, dtype=torch.float64)
    for f, w in zip(factors, weights, strict=True):
        acc.narrow(dim, 0, f.shape[dim]).add_(f.to(torch.float64), alpha=float(w))
    return acc


def mean_of_keys(
    states: Sequence[AdapterState], keys: Sequence[str], weights: torch.Tensor
) -> AdapterState:
    """:func:`weighted_mean` restricted to ``keys`` (the keys outside any LoRA pair)."""
    if not keys:
        return {}
    return weighted_mean([{k: s[k] for k in keys} for s in states], weights)


def zero_padded_mean(states: Sequence[AdapterState], weights: torch.Tensor) -> AdapterState:
    """FedAvg over LoRA pairs of mixed ranks: every pair zero-padded to the round's r_max.

    ``A = Σ w_k pad(A_k)``, ``B = Σ w_k pad(B_k)`` (rows of A, columns of B); keys outside a
    pair go through :func:`weighted_mean`, which still refuses mismatched shapes. With equal
    ranks this is exactly :func:`weighted_mean`.
    """
    keys = common_keys(states)
    pairs, others = lora_pairs(keys)
    w = [float(x) for x in weights]
    out = mean_of_keys(states, others, weights)
    for a_key, b_key in pairs.values():
        pair_ranks(states, a_key, b_key)
        for key, dim in ((a_key, 0), (b_key, 1)):
            mean = padded_mean([s[key] for s in states], w, dim)
            out[key] = mean.to(states[0][key].dtype)
    return {k: out[k] for k in keys}


Factors = tuple[torch.Tensor, torch.Tensor]
"""The ``(A, B)`` factors of one LoRA pair."""


@dataclass(frozen=True)
class LoRAPair:
    """One LoRA pair of a round as the clients sent it.

    Attributes:
        prefix: The module path shared by both keys (``...q_proj.``).
        a_key: Key of the A factor.
        b_key: Key of the B factor.
        a: Each client's A, in update order.
        b: Each client's B, in update order.
        ranks: Each client's rank.
    """

    prefix: str
    a_key: str
    b_key: str
    a: list[torch.Tensor]
    b: list[torch.Tensor]
    ranks: list[int]


@dataclass
class PairedRound:
    """One round's updates as the low-rank rules read them (FedEx, FRLoRA, FlexLoRA, ridge).

    Attributes:
        states: The clients' shared states, in update order.
        weights: Their aggregation weights (sum to 1).
        keys: The keys every client sent.
        pairs: ``{prefix: (a_key, b_key)}`` of the LoRA pairs among ``keys``.
        out: The weighted mean of every key outside a pair (the rule fills in the pairs).
    """

    states: list[AdapterState]
    weights: torch.Tensor
    keys: list[str]
    pairs: dict[str, tuple[str, str]]
    out: AdapterState


def paired_round(updates: Sequence[ClientUpdate], weighting: str) -> PairedRound:
    """Weights, common keys, LoRA pairs and the mean of the unpaired keys of ``updates``."""
    states = [u.state for u in updates]
    weights = client_weights([u.num_examples for u in updates], weighting)
    keys = common_keys(states)
    pairs, others = lora_pairs(keys)
    return PairedRound(states, weights, keys, pairs, mean_of_keys(states, others, weights))
