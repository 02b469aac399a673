"""The sample schema every benchmark produces and every collate consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("vqa", "report", "detection", "classification")
ANSWER_TYPES = ("closed", "open")


@dataclass
class Sample:
    """One instruction-tuning example.

    Attributes:
        image: An ``HxWx3`` uint8 array, a path to an image file (DICOM allowed), or ``None``
            for a text-only sample.
        modality: Imaging modality tag, e.g. ``"ct"``, ``"mri"``, ``"xray"``, ``"us"``.
        question: The user turn (without the image token; the prompt template adds it).
        answer: The target text.
        task: One of ``TASKS``.
        answer_type: ``"closed"`` (yes/no) or ``"open"`` for VQA; ``None`` otherwise.
        box: Normalised ``(x1, y1, x2, y2)`` in [0, 1] for detection samples.
        meta: Free-form provenance (scene id, sub-style, source dataset, ...).
        audio: A mono float waveform (at the audio collator's sample rate) or a path to a
            sound file (WAV/FLAC) for a sample that carries sound; ``None`` otherwise.
    """

    image: np.ndarray | str | Path | None
    modality: str
    question: str
    answer: str
    task: str
    answer_type: str | None = None
    box: tuple[float, float, float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    audio: np.ndarray | str | Path | None = None


@dataclass
class ClientData:
    """One client's (hospital's) data."""

    client_id: str
    task: str
    modality: str
    train: list[Sample]
    test: list[Sample]
    val: list[Sample] = field(default_factory=list)
    """Validation split: what hyper-parameter searches score (empty when the source has none)."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(
                f"client {self.client_id!r}: unknown task {self.task!r}; use one of {TASKS}"
            )


def validate_sample(sample: Sample, where: str = "sample") -> None:
    """Raise ``ValueError`` naming ``where`` and the field when ``sample`` breaks the schema."""
    if sample.task not in TASKS:
        raise ValueError(f"{where}: task {sample.task!r} is not one of {TASKS}")
    if not isinstance(sample.question, str) or not sample.question.strip():
        raise ValueError(f"{where}: empty question")
    if not isinstance(sample.answer, str) or not sample.answer.strip():
        raise ValueError(f"{where}: empty answer")
    if sample.answer_type is not None and sample.answer_type not in ANSWER_TYPES:
        raise ValueError(
            f"{where}: answer_type {sample.answer_type!r} is not one of {ANSWER_TYPES}"
        )
    if isinstance(sample.image, np.ndarray) and (
        sample.image.ndim != 3 or sample.image.shape[2] != 3 or sample.image.dtype != np.uint8
    ):
        raise ValueError(
            f"{where}: image array must be HxWx3 uint8, "
            f"got {sample.image.shape} {sample.image.dtype}"
        )
    if sample.task == "detection":
        if sample.box is None:
            raise ValueError(f"{where}: detection sample without box")
        x1, y1, x2, y2 = sample.box
        if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
            raise ValueError(f"{where}: box {sample.box} is not normalised x1<x2, y1<y2 in [0, 1]")
