"""What the federated translation stage takes and gives: one image to translate, the stage's
settings and its result (the scheme itself: ``translation/federated.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fedmllm.translation.models import PatchDiscriminator, Translator

WEIGHTINGS = ("score", "uniform")


@dataclass(frozen=True)
class TranslationItem:
    """One training image of a client, seen by the translation stage.

    Attributes:
        image: ``HxWx3`` uint8 array.
        modality: Its modality tag.
        text: The clinical text that conditions the translator (question + answer).
        targets: The other modalities this image may be translated into (empty: none).
    """

    image: np.ndarray
    modality: str
    text: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class TranslationConfig:
    """Hyper-parameters of the translation federation (``benchmark.translation.*``).

    Attributes:
        rounds: Federated rounds of translator training (0: untrained translator).
        local_steps: Optimiser steps per client and round, at most
            ``ceil(max_epochs·n_k / batch_size)`` for a client of ``n_k`` images.
        max_epochs: Cap on the passes over a client's images per round (keeps small clients,
            e.g. under ``debug=smoke``, from repeating their few images many times).
        batch_size: Images per local step.
        lr: Adam learning rate of generator and discriminators (β = (0.5, 0.999)).
        lambda_rec: Weight of the backward (cycle) pixel loss.
        lambda_id: Weight of the identity loss ``G(x, s→s) ≈ x``.
        width: Generator trunk channels.
        blocks: Generator residual blocks.
        disc_width: Discriminator's first-layer channels.
        weighting: ``score`` (``n_k·q_k``) or ``uniform`` (``n_k``, plain FedAvg).
        score_floor: Scores are clipped to ``[score_floor, 1]`` before weighting.
        score_batch: Images of the client's own data the score is computed on.
    """

    rounds: int = 6
    local_steps: int = 20
    max_epochs: float = 2.0
    batch_size: int = 16
    lr: float = 2e-3
    lambda_rec: float = 5.0
    lambda_id: float = 0.5
    width: int = 8
    blocks: int = 2
    disc_width: int = 16
    weighting: str = "score"
    score_floor: float = 0.05
    score_batch: int = 64

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(
                f"benchmark.translation.weighting={self.weighting!r} is unknown; use one of "
                f"{WEIGHTINGS}"
            )
        if self.rounds < 0 or self.local_steps < 1 or self.batch_size < 1 or self.max_epochs <= 0:
            raise ValueError(
                "benchmark.translation needs rounds >= 0, local_steps >= 1, batch_size >= 1 and "
                f"max_epochs > 0, got {self.rounds}, {self.local_steps}, {self.batch_size}, "
                f"{self.max_epochs}"
            )
        if not 0.0 < self.score_floor <= 1.0:
            raise ValueError(
                f"benchmark.translation.score_floor must be in (0, 1], got {self.score_floor}"
            )

    @classmethod
    def from_any(cls, cfg: Mapping[str, Any] | TranslationConfig | None) -> TranslationConfig:
        """From a dict / Hydra node (unknown keys are an error naming them) or ``None``."""
        if isinstance(cfg, TranslationConfig):
            return cfg
        raw = dict(cfg or {})
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"benchmark.translation has unknown keys {unknown}; "
                f"known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for cache keys and reports)."""
        return asdict(self)


@dataclass
class TranslationResult:
    """The trained translator and what happened while training it.

    Attributes:
        translator: The global translator after the last round.
        discriminators: The global discriminator of each modality after the last round.
        history: Per round: each client's score, aggregation weight and mean losses.
        comm: ``up_bytes`` / ``down_bytes`` of the whole translation stage.
    """

    translator: Translator
    discriminators: dict[str, PatchDiscriminator] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    comm: dict[str, int] = field(default_factory=dict)
