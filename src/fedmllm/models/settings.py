"""The models' frozen config dataclasses (model sizes, pretraining) to and from plain mappings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Settings")


class Settings:
    """Mixin of a frozen dataclass read from a (Hydra) mapping that names its fields.

    Class attributes:
        section: How an error names the config (``unknown <section> keys ...``).
    """

    section: ClassVar[str]

    @classmethod
    def from_dict(cls: type[T], values: Mapping[str, Any] | T | None) -> T:
        """An instance from a mapping (missing keys take the defaults), rejecting unknown keys
        by name; an instance is returned as it is."""
        if isinstance(values, cls):
            return values
        given = dict(values or {})
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"unknown {cls.section} keys {unknown}; known: {sorted(known)}")
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for hashing and manifests)."""
        return asdict(self)  # type: ignore[call-overload]
