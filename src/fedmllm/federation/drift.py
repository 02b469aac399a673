"""Client-drift diagnostics of one round (Fed-MoLE, Fig. 1b/1c), as pure functions of states.

What "local" means: a client's **full** adapter state right after its local update — the
shared tensors it sends (``ClientUpdate.state``) together with the private tensors it keeps.
So Standalone, which sends nothing, still has local adapters whose drift can be measured, and
methods that split A and B (FedSA) are measured on both.

Per round, over the K clients that trained:

- ``variance``: the across-client variance of every adapter element, averaged over elements
  (population variance, 1/K). Identical clients give 0. Also split by tensor kind
  (``lora_A``, ``lora_B``, ``other``).
- ``dist_global[k]``: ‖local_k − global‖_F over the keys the server aggregates, with the
  global **after** aggregation (the mismatch the paper plots in Fig. 1c). Absent when nothing
  is shared (Standalone).
- ``dist_mean[k]``: ‖local_k − mean_j local_j‖_F over all keys: the distance to the adapter
  plain averaging would form; defined for every method, Standalone included.
- ``cos_mean[k]``: cosine between client k's update and the mean update; ``cos_pairwise``:
  the K×K cosine matrix between clients' updates (only while K ≤ ``pairwise_max``). A client's
  update is local − reference, where the reference is the global before aggregation for shared
  keys (the common start of the round) and the initial adapter for keys that are never shared
  (they have no common round start, so their update is cumulative since initialisation).

Memory: the states come from a re-iterable source, one client at a time, in two passes
(Welford moments, then distances). Besides one client's state this keeps the running mean and
M2 in float64 (4 adapter sizes) and, only for the pairwise matrix, K flattened updates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from fedmllm.types import AdapterState

LocalStates = Callable[[], Iterable[tuple[str, AdapterState]]]
"""A zero-argument callable returning a fresh iterable of ``(client_id, full local state)``."""


def tensor_kind(key: str) -> str:
    """``lora_A``, ``lora_B`` or ``other`` for an adapter key (for the per-kind variance)."""
    for kind in ("lora_A", "lora_B"):
        if kind in key:
            return kind
    return "other"


@dataclass
class Moments:
    """Welford running mean and M2 per key over clients (float64, exact 0 for equal inputs).

    Only keys every client has, with one shape, are kept: clients with private tensors of
    their own (per-cluster experts, heterogeneous ranks) do not stop the diagnostics, and
    ``skipped`` counts what was left out.
    """

    count: int = 0
    mean: dict[str, torch.Tensor] = field(default_factory=dict)
    m2: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)

    def add(self, state: AdapterState) -> None:
        """Fold one client's state in."""
        if self.count:
            for k in list(self.mean):
                if k not in state or state[k].shape != self.mean[k].shape:
                    self.skipped.add(k)
                    del self.mean[k], self.m2[k]
            self.skipped.update(k for k in state if k not in self.mean)
        self.count += 1
        for k, t in state.items():
            if k in self.skipped:
                continue
            x = t.detach().to("cpu", torch.float64)
            if self.count == 1:
                self.mean[k], self.m2[k] = x.clone(), torch.zeros_like(x)
                continue
            delta = x - self.mean[k]
            self.mean[k] += delta / self.count
            self.m2[k] += delta * (x - self.mean[k])

    def variance(self) -> tuple[float, dict[str, float]]:
        """Mean over elements of the population variance, overall and per tensor kind."""
        if self.count == 0:
            raise ValueError("no client states were given")
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for k, m2 in self.m2.items():
            kind = tensor_kind(k)
            sums[kind] = sums.get(kind, 0.0) + float(m2.sum()) / self.count
            counts[kind] = counts.get(kind, 0) + m2.numel()
        total = sum(counts.values())
        overall = sum(sums.values()) / total if total else 0.0
        return overall, {kind: sums[kind] / counts[kind] for kind in sums if counts[kind]}


def frobenius_distance(a: AdapterState, b: AdapterState, keys: Iterable[str]) -> float:
    """‖a − b‖_F over ``keys`` (all tensors seen as one vector)."""
    sq = 0.0
    for k in keys:
        sq += float((a[k].double() - b[k].double()).pow(2).sum())
    return math.sqrt(sq)


def cosine(u: torch.Tensor, v: torch.Tensor) -> float | None:
    """Cosine of two flat vectors; ``None`` when either is zero (the angle is undefined)."""
    nu, nv = float(u.norm()), float(v.norm())
    if nu == 0.0 or nv == 0.0:
        return None
    return float(torch.dot(u, v)) / (nu * nv)


def _flat_update(local: AdapterState, reference: AdapterState, keys: list[str]) -> torch.Tensor:
    # No common key (e.g. clients that each hold other modality experts): an empty vector,
    # whose cosine is undefined (None) rather than an error.
    if not keys:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([(local[k].double() - reference[k].double()).flatten() for k in keys])


def drift_stats(
    local_states: LocalStates,
    global_after: AdapterState,
    reference: AdapterState,
    pairwise_max: int = 16,
) -> dict[str, Any]:
    """The drift record of one round (see the module docstring for every quantity).

    Args:
        local_states: Re-iterable source of ``(client_id, full local state)``; read twice.
        global_after: The aggregated global state (its keys are the shared ones).
        reference: Start point of the updates: global before aggregation for shared keys,
            the initial adapter for the others; must hold every key of the local states.
        pairwise_max: Compute the K×K update-cosine matrix only for K up to this (0: never).

    Returns:
        A JSON-able dict: ``clients``, ``variance``, ``variance_by_kind``, ``keys`` and
        ``skipped_keys`` (tensors measured / not common to all clients), ``dist_global``
        (if anything is shared), ``dist_mean``, ``cos_mean`` and maybe ``cos_pairwise``.
    """
    moments = Moments()
    ids: list[str] = []
    for cid, state in local_states():
        ids.append(cid)
        moments.add(state)
    variance, by_kind = moments.variance()
    missing = [k for k in moments.mean if k not in reference]
    if missing:
        raise KeyError(f"drift reference lacks local keys, e.g. {missing[:3]}")
    # Heterogeneous ranks: a global (or initial) tensor of another shape than the clients'
    # cannot be subtracted; such keys are left out of the distances and cosines, and counted.
    keys = sorted(k for k, m in moments.mean.items() if reference[k].shape == m.shape)
    moments.skipped.update(set(moments.mean) - set(keys))
    shared = [k for k in keys if k in global_after and global_after[k].shape == reference[k].shape]
    mean_update = _flat_update(moments.mean, reference, keys)
    record: dict[str, Any] = {
        "clients": ids,
        "variance": variance,
        "variance_by_kind": by_kind,
        "keys": len(keys),
        "skipped_keys": len(moments.skipped),
        "dist_mean": {},
        "cos_mean": {},
    }
    if shared:
        record["dist_global"] = {}
    flats: list[torch.Tensor] = []
    keep_flats = 1 < len(ids) <= pairwise_max
    for cid, state in local_states():
        record["dist_mean"][cid] = frobenius_distance(state, moments.mean, keys)
        if shared:
            record["dist_global"][cid] = frobenius_distance(state, global_after, shared)
        update = _flat_update(state, reference, keys)
        record["cos_mean"][cid] = cosine(update, mean_update)
        if keep_flats:
            flats.append(update.float())
    if keep_flats:
        record["cos_pairwise"] = [[cosine(u, v) for v in flats] for u in flats]
    return record


def drift_logs(record: dict[str, Any]) -> dict[str, float]:
    """Flat scalars for TensorBoard: ``drift/...`` means over clients, ``client_<id>/drift/...``."""
    logs: dict[str, float] = {"drift/variance": record["variance"]}
    logs.update({f"drift/variance/{k}": v for k, v in record["variance_by_kind"].items()})
    for name in ("dist_global", "dist_mean", "cos_mean"):
        values = {c: v for c, v in record.get(name, {}).items() if v is not None}
        logs.update({f"client_{c}/drift/{name}": v for c, v in values.items()})
        if values:
            logs[f"drift/{name}"] = sum(values.values()) / len(values)
    matrix = record.get("cos_pairwise")
    if matrix:
        off = [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j]
        off = [v for v in off if v is not None]
        if off:
            logs["drift/cos_pairwise"] = sum(off) / len(off)
    return logs
