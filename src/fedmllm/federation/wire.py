"""Wire precision: what travels between clients and the server, and at what width.

``federation.wire_dtype`` (``float32`` / ``bfloat16`` / ``float16``) is the dtype of every
floating tensor on the wire, both ways: a client's shared tensors and extras, the global state
and the rule's broadcast as each client receives them. The traffic counters count those
tensors, so 16-bit wire halves the bytes. The server decodes what arrives back to float32
before aggregating (the rules themselves accumulate in float64), and a client copies what it
receives into its float32 adapters, so only the values' precision crosses the wire. Dense
base-weight deltas (FedEx-LoRA, FRLoRA) are applied to every client's base and stay float32:
a base that drifted apart between server and clients could not be repaired.
"""

from __future__ import annotations

import torch

from fedmllm.types import AdapterState

WIRE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def wire_dtype(name: str) -> torch.dtype:
    """The torch dtype of ``federation.wire_dtype``.

    Raises:
        ValueError: An unknown name (the message lists the known ones).
    """
    try:
        return WIRE_DTYPES[str(name)]
    except KeyError:
        raise ValueError(
            f"federation.wire_dtype must be one of {sorted(WIRE_DTYPES)}, got {name!r}"
        ) from None


def to_wire(state: AdapterState, dtype: torch.dtype) -> AdapterState:
    """``state`` as it travels: floating tensors cast to ``dtype``, others unchanged.

    With float32 tensors and a float32 wire the tensors themselves are returned (no copy).
    """
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def from_wire(state: AdapterState) -> AdapterState:
    """What arrived, decoded for aggregation: 16-bit floating tensors back to float32."""
    return {
        k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in state.items()
    }
