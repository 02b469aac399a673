"""Nested mappings as flat dotted keys (configs compared key by key)."""

from __future__ import annotations

from typing import Any


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists and scalars are leaves."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return {k.rstrip("."): v for k, v in out.items()}
