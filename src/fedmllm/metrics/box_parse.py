"""Boxes as text: parse the first box in generated text, format a box, IoU of two boxes.

A box is ``(x1, y1, x2, y2)`` in coordinates normalised to [0, 1], written by the prompt
templates as ``[0.12, 0.34, 0.56, 0.78]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

Box = tuple[float, float, float, float]

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER_FULL = re.compile(_NUMBER)
# Bracketed groups: the commas delimit the fields, so spaces inside a number ("0 . 1 2", left
# by decoders that emit one token per digit) can be removed without merging two numbers.
_BRACKETED = re.compile(r"[\[(]([^\[\]()]*)[\])]")
# Unbracketed: four numbers separated by commas (spaces inside numbers again tolerated).
_COMMA_RUN = re.compile(r"(?<![\d.])" + r"\s*,\s*".join([r"([-+]?[\d\s.]*\d)"] * 4))
# A decimal point with spaces around it, between digits: "0 . 12" -> "0.12".
_SPACED_POINT = re.compile(r"(?<=\d)\s*\.\s*(?=\d)")


def _as_number(field: str) -> float | None:
    """Parse one field, ignoring whitespace inside it; None if it is not a single number."""
    compact = re.sub(r"\s+", "", field)
    if not _NUMBER_FULL.fullmatch(compact):
        return None
    return float(compact)


def _four_numbers(fields: Sequence[str]) -> Box | None:
    if len(fields) != 4:
        return None
    values = [_as_number(f) for f in fields]
    if any(v is None for v in values):
        return None
    return (values[0], values[1], values[2], values[3])  # type: ignore[return-value]


def parse_box(text: str) -> Box | None:
    """Parse the first box written in ``text``.

    Tried in order, the first success wins:

    1. a bracketed group of four comma-separated numbers, ``[x1, y1, x2, y2]`` or ``(...)``;
    2. four comma-separated numbers without brackets, ``x1, y1, x2, y2``;
    3. the first four numbers separated by whitespace, ``x1 y1 x2 y2``.

    In forms 1 and 2 spaces inside a number are ignored (``0 . 1 2`` reads 0.12); in form 3
    only spaces around a decimal point are, since spaces there also separate the numbers.
    Coordinates are returned as written: no clamping, no validity check (see
    :func:`clean_box`).

    Args:
        text: Generated or reference text.

    Returns:
        ``(x1, y1, x2, y2)`` as floats, or None when no box can be read.
    """
    for match in _BRACKETED.finditer(text):
        box = _four_numbers(match.group(1).split(","))
        if box is not None:
            return box
    for match in _COMMA_RUN.finditer(text):
        box = _four_numbers(match.groups())
        if box is not None:
            return box
    numbers = _NUMBER_FULL.findall(_SPACED_POINT.sub(".", text))
    if len(numbers) >= 4:
        return _four_numbers(numbers[:4])
    return None


def format_box(box: Sequence[float]) -> str:
    """Write a box the way targets are written: ``[0.12, 0.34, 0.56, 0.78]`` (two decimals).

    Args:
        box: Four coordinates ``(x1, y1, x2, y2)``.

    Returns:
        The bracketed text.

    Raises:
        ValueError: If ``box`` does not hold four numbers.
    """
    if len(box) != 4:
        raise ValueError(f"a box has 4 coordinates, got {len(box)}")
    return "[" + ", ".join(f"{float(v):.2f}" for v in box) + "]"


def clean_box(box: Sequence[float]) -> Box | None:
    """Clamp a box to the unit square; None if it is then empty or not finite.

    Args:
        box: Four coordinates ``(x1, y1, x2, y2)``.

    Returns:
        The clamped box, or None when ``x2 <= x1`` or ``y2 <= y1`` after clamping.
    """
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        return None
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) for v in box)
    if x2 <= x1 or y2 <= y1:
        return None
    return (x1, y1, x2, y2)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes ``(x1, y1, x2, y2)``; 0 when the union is empty."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0
