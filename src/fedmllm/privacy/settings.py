"""The ``privacy`` config group as one checked dataclass.

``privacy=none`` (default), ``privacy=dp_sgd`` (sample-level DP-SGD in every client's local
training) or ``privacy=dp_client`` (each update clipped to ``clip``, Gaussian noise added at the
server — central DP — or at the client — local DP). The noise is given as a multiplier σ
(``noise_multiplier``, std = σ·clip) or derived from ``target_epsilon`` for the planned rounds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MODES = ("none", "dp_sgd", "dp_client")
NOISE_AT = ("server", "client")


@dataclass(frozen=True)
class PrivacyConfig:
    """Differential-privacy settings of a run.

    Attributes:
        mode: ``none`` | ``dp_sgd`` | ``dp_client``.
        clip: DP-SGD: per-sample gradient norm bound C; client DP: update norm bound S.
        noise_multiplier: σ (noise std = σ·clip); ignored when ``target_epsilon`` is set.
        target_epsilon: Derive σ so that ε reaches this after the planned rounds (null: use
            ``noise_multiplier``).
        delta: The δ at which ε is reported.
        noise_at: Client DP only: ``server`` (central DP) or ``client`` (local DP).
    """

    mode: str = "none"
    clip: float = 1.0
    noise_multiplier: float = 1.0
    target_epsilon: float | None = None
    delta: float = 1e-5
    noise_at: str = "server"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"privacy.mode={self.mode!r}: use one of {', '.join(MODES)}")
        if self.noise_at not in NOISE_AT:
            raise ValueError(f"privacy.noise_at={self.noise_at!r}: use server or client")
        if not self.clip > 0:
            raise ValueError(f"privacy.clip={self.clip}: must be > 0")
        if self.noise_multiplier < 0:
            raise ValueError(f"privacy.noise_multiplier={self.noise_multiplier}: must be >= 0")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ValueError(f"privacy.target_epsilon={self.target_epsilon}: must be > 0 or null")
        if not 0 < self.delta < 1:
            raise ValueError(f"privacy.delta={self.delta}: must lie in (0, 1)")

    @property
    def enabled(self) -> bool:
        """Whether any DP mechanism runs."""
        return self.mode != "none"

    def describe(self) -> dict[str, Any]:
        """Plain facts for ``results.json``."""
        return dataclasses.asdict(self)


def privacy_config(node: Any) -> PrivacyConfig:
    """A :class:`PrivacyConfig` from the ``privacy`` config node (a mapping or None).

    Raises:
        ValueError: An unknown key (named with the keys that exist) or a value out of range.
    """
    if node is None:
        return PrivacyConfig()
    if isinstance(node, PrivacyConfig):
        return node
    values = dict(node)
    known = {f.name for f in dataclasses.fields(PrivacyConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"privacy.{unknown[0]} is not a privacy option; use one of {', '.join(sorted(known))}"
        )
    return PrivacyConfig(**values)
