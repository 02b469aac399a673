"""Words and small helpers shared by every text template (questions, reports, boxes).

Every emitted text is lower case and splits, under ``TOKEN_RE``, into words of
:func:`fedmllm.data.synthmed.vocabulary`: letters-only words, single digits and single
punctuation marks.
"""

from __future__ import annotations

import re

from fedmllm.data.synthmed.scene import Lesion

TOKEN_RE = re.compile(r"\d|[a-z]+|[^\sa-z\d]")
PUNCTUATION = (".", ",", "?", ":", ";", "[", "]")
DIGITS = tuple(str(d) for d in range(10))
NUMBER_WORDS = ("zero", "one", "two", "three")
YES_NO = ("yes", "no")
# The one-word answer naming a modality (the tag "us" would read as the pronoun).
MODALITY_WORDS = {"ct": "ct", "mri": "mri", "xray": "xray", "us": "ultrasound"}
SIDES = ("left", "right")
HALVES = ("upper", "lower")
_BOX_RE = re.compile(r"^\[(\d\.\d\d), (\d\.\d\d), (\d\.\d\d), (\d\.\d\d)\]$")


def tokenize(text: str) -> list[str]:
    """Split text the way the tiny model's pre-tokenizer does."""
    return TOKEN_RE.findall(text)


def image_side(lesion: Lesion, size: int) -> str:
    """``left``/``right`` as seen on the image."""
    return "left" if lesion.center[0] < size / 2 else "right"


def patient_side(lesion: Lesion, size: int) -> str:
    """``left``/``right`` of the patient: radiological convention, the image is mirrored."""
    return "right" if lesion.center[0] < size / 2 else "left"


def image_half(lesion: Lesion, size: int) -> str:
    """``upper``/``lower`` half of the image."""
    return "upper" if lesion.center[1] < size / 2 else "lower"


def format_box(box: list[float] | tuple[float, ...]) -> str:
    """The answer text of a box: ``[x1, y1, x2, y2]`` with two decimals."""
    return "[" + ", ".join(f"{v:.2f}" for v in box) + "]"


def box_from_text(text: str) -> tuple[float, float, float, float] | None:
    """Parse :func:`format_box` output back to floats; ``None`` when it does not match."""
    match = _BOX_RE.match(text.strip())
    if match is None:
        return None
    x1, y1, x2, y2 = (float(v) for v in match.groups())
    return x1, y1, x2, y2


def count_noun(n: int, singular: str, plural: str) -> str:
    """``one lesion`` / ``two lesions`` with the number spelled out."""
    return f"{NUMBER_WORDS[n]} {singular if n == 1 else plural}"
