"""Adapter states on Flower's wire: ``AdapterState`` ⇄ ``ArrayRecord``, and reply checks.

Flower serialises an ``Array`` through NumPy, which has no bfloat16: such tensors travel as
their raw 16-bit patterns (``int16`` view, lossless) and the record's companion
``ConfigRecord`` names their dtype so the receiver restores it. Every other dtype travels as
is, so a float32 tensor arrives bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedmllm.types import AdapterState

_VIEWED = {torch.bfloat16: torch.int16}
"""Dtypes NumPy cannot hold, sent as a same-width integer view."""


def to_record(state: AdapterState) -> tuple[ArrayRecord, ConfigRecord]:
    """An ``ArrayRecord`` of ``state`` (CPU, contiguous) and the dtypes to restore.

    Returns:
        The arrays and a ``ConfigRecord`` mapping each bit-viewed key to its torch dtype name
        (empty for float32 states).
    """
    record = ArrayRecord()
    dtypes: dict[str, str] = {}
    for key, tensor in state.items():
        t = tensor.detach().to("cpu").contiguous()
        if t.dtype in _VIEWED:
            dtypes[key] = str(t.dtype).removeprefix("torch.")
            t = t.view(_VIEWED[t.dtype])
        record[key] = Array(t.numpy())
    return record, ConfigRecord(dtypes)


def from_record(record: ArrayRecord, dtypes: Mapping[str, Any] | None = None) -> AdapterState:
    """The ``AdapterState`` of a record written by :func:`to_record` (fresh CPU tensors).

    Raises:
        ValueError: If an array's stored type cannot become a tensor, or ``dtypes`` names a
            dtype torch does not have.
    """
    dtypes = dict(dtypes or {})
    state: AdapterState = {}
    for key in record:
        try:
            t = torch.from_numpy(record[key].numpy().copy())
        except (TypeError, ValueError) as e:
            raise ValueError(f"array {key!r} cannot be read as a tensor: {e}") from e
        if key in dtypes:
            dtype = getattr(torch, str(dtypes[key]), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"array {key!r}: unknown dtype {dtypes[key]!r}")
            t = t.view(dtype)
        state[key] = t
    return state


DTYPES_SUFFIX = ".dtypes"
BASE_PREFIX = "base."
"""Content keys ``base.<round>``: the dense base-weight deltas of an aggregation round."""


def put_state(content: RecordDict, name: str, state: AdapterState) -> None:
    """Store ``state`` in a message's content under ``name`` (and its dtypes beside it)."""
    content[name], content[name + DTYPES_SUFFIX] = to_record(state)


def get_state(content: RecordDict, name: str) -> AdapterState:
    """The state stored by :func:`put_state` under ``name`` (empty when absent)."""
    if name not in content:
        return {}
    record = content[name]
    if not isinstance(record, ArrayRecord):
        raise ValueError(f"message entry {name!r} is a {type(record).__name__}, not arrays")
    dtypes = content.get(name + DTYPES_SUFFIX, None)
    return from_record(record, dtypes)


def put_base_deltas(content: RecordDict, pending: list[tuple[int, AdapterState]]) -> None:
    """Store the base-weight deltas of each listed round as ``base.<round>``."""
    for round_idx, deltas in pending:
        put_state(content, f"{BASE_PREFIX}{round_idx}", deltas)


def get_base_deltas(content: RecordDict) -> list[tuple[int, AdapterState]]:
    """The ``(round, deltas)`` a message carries, in round order."""
    rounds = sorted(
        int(k[len(BASE_PREFIX) :])
        for k in content
        if k.startswith(BASE_PREFIX) and not k.endswith(DTYPES_SUFFIX)
    )
    return [(r, get_state(content, f"{BASE_PREFIX}{r}")) for r in rounds]


Shapes = dict[str, tuple[int, ...]]
"""Key → shape: what a client may send."""


def shapes(state: AdapterState) -> Shapes:
    """Key → shape of a state (what a reply's tensors are checked against)."""
    return {k: tuple(v.shape) for k, v in state.items()}


def check_state(
    state: AdapterState, allowed: Mapping[str, tuple[int, ...]], what: str
) -> list[str]:
    """Why ``state`` must not be aggregated: unknown keys, wrong shapes, NaN or Inf values.

    Args:
        state: A client's reply tensors.
        allowed: The keys it may hold with their shapes (a reply may hold fewer keys: a method
            may send only what its client's data reached).
        what: Name of the state in the messages (``"update"``, ``"extras"``).

    Returns:
        One message per problem; empty when the state is sound.
    """
    problems = []
    unknown = sorted(set(state) - set(allowed))
    if unknown:
        problems.append(f"{what} has {len(unknown)} unexpected keys, e.g. {unknown[:3]}")
    for key, t in state.items():
        if key in allowed and tuple(t.shape) != tuple(allowed[key]):
            problems.append(
                f"{what} {key!r} has shape {tuple(t.shape)}, expected {tuple(allowed[key])}"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            problems.append(f"{what} {key!r} has {bad} NaN/Inf values")
    return problems


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain-float metrics, dropping non-numbers and non-finite values (logged as-is by Flower)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out
