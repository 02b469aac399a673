"""UniFLoW's II-stage training: which adapter groups train at a given local step.

Adapter parameters fall into three groups by module path: ``encoder`` (LoRA in the vision
tower), ``projector`` (the trainable vision-to-LLM projector) and ``llm`` (adapters of the
language model; everything that is neither of the others). Stage I trains encoder and
projector with the LLM adapters frozen; stage II trains the LLM adapters with the encoder side
frozen (UniFLoW Eq. 7, METHODS.md). The schedule is a pure function of (round, local step), so
it needs no state in checkpoints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ENCODER, PROJECTOR, LLM = "encoder", "projector", "llm"
GROUPS = (ENCODER, PROJECTOR, LLM)
STAGE_I = frozenset({ENCODER, PROJECTOR})
STAGE_II = frozenset({LLM})
ALL_GROUPS = frozenset(GROUPS)
IMAGE_SIDE = STAGE_I
"""Groups a text-only batch can never reach (there is no image to encode or project)."""
MODES = ("two_stage", "simultaneous", "reverse", "by_round")
IMAGE, AUDIO = "image", "audio"
"""The encoder-side parts of ``GroupPatterns.side_of`` (the third is ``llm``)."""


@dataclass(frozen=True)
class StageSchedule:
    """When stage I (encoder + projector) and stage II (LLM adapters) train.

    Modes:
        ``two_stage``: stage I for local steps ``step < tau * num_steps``, then stage II
            (UniFLoW's rule; ``tau=0`` trains only the LLM side, ``tau=1`` only the encoder side).
        ``simultaneous``: every group at every step.
        ``reverse``: stage II first, for ``step < (1 - tau) * num_steps``, then stage I. Each
            side gets as many steps as under ``two_stage`` with the same ``tau``; only the
            order differs, which is what UniFLoW's reverse ablation compares.
        ``by_round``: stage I in rounds ``round < switch_round_frac * num_rounds``, stage II
            after (UniFLoW's ``T = 0.5 x CR`` variant).

    Attributes:
        mode: One of ``MODES``.
        tau: Fraction of each round's local steps spent in the first stage, in ``[0, 1]``.
        switch_round_frac: Fraction of the rounds spent in stage I for ``by_round``.
    """

    mode: str = "two_stage"
    tau: float = 0.25
    switch_round_frac: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"stage_schedule.mode must be one of {MODES}, got {self.mode!r}")
        for name in ("tau", "switch_round_frac"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"stage_schedule.{name} must lie in [0, 1], got {value}")

    @classmethod
    def from_config(cls, value: StageSchedule | Mapping[str, Any] | None) -> StageSchedule | None:
        """A schedule from a (Hydra) mapping; ``None`` means "no schedule" (all groups train)."""
        if value is None or isinstance(value, StageSchedule):
            return value
        known = {"mode", "tau", "switch_round_frac"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown stage_schedule keys {unknown}; known: {sorted(known)}")
        return cls(**{k: value[k] for k in value})

    def active(self, step: int, num_steps: int, round_idx: int, num_rounds: int) -> frozenset[str]:
        """The groups that train at local step ``step`` of round ``round_idx``."""
        if self.mode == "simultaneous":
            return ALL_GROUPS
        if self.mode == "two_stage":
            return STAGE_I if step < self.tau * num_steps else STAGE_II
        if self.mode == "reverse":
            return STAGE_II if step < (1.0 - self.tau) * num_steps else STAGE_I
        return STAGE_I if round_idx < self.switch_round_frac * num_rounds else STAGE_II

    def uses(self) -> frozenset[str]:
        """Groups this schedule can train at some step (a degenerate tau drops one side)."""
        if self.mode in ("two_stage", "reverse") and self.tau in (0.0, 1.0):
            # tau is the encoder side's share of the steps in both orders.
            return STAGE_I if self.tau == 1.0 else STAGE_II
        return ALL_GROUPS


@dataclass(frozen=True)
class GroupPatterns:
    """Regexes (``re.search`` on parameter names) that place a parameter in a group.

    The defaults match LLaVA module names (``vision_tower``, ``multi_modal_projector``);
    other families set their own (e.g. Idefics3 ``vision_model`` and ``connector``).
    ``audio`` picks, among encoder and projector names, those of the audio side (a model
    that hears: ``audio_tower``, ``audio_projector``); the rest of that side is the image side.
    It splits what a batch reaches (an audio batch never reaches the vision tower), not the
    stages: stage I trains both encoders and both projectors.
    """

    encoder: str = r"vision_tower"
    projector: str = r"multi_modal_projector"
    audio: str = r"audio_tower|audio_projector"

    def side_of(self, name: str) -> str:
        """``llm``, ``image`` or ``audio``: which input a parameter serves."""
        if self.group_of(name) == LLM:
            return LLM
        return AUDIO if re.search(self.audio, name) else IMAGE

    def group_of(self, name: str) -> str:
        """``encoder``, ``projector`` or ``llm`` for a parameter (or state key) name."""
        if re.search(self.encoder, name):
            return ENCODER
        if re.search(self.projector, name):
            return PROJECTOR
        return LLM

    def split(self, names: Iterable[str]) -> dict[str, list[str]]:
        """Names by group (every group present, possibly empty), order kept."""
        out: dict[str, list[str]] = {g: [] for g in GROUPS}
        for name in names:
            out[self.group_of(name)].append(name)
        return out
