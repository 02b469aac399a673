"""Input checks shared by the text metrics."""

from __future__ import annotations

from collections.abc import Sequence


def check_pairs(preds: Sequence[str], targets: Sequence[object]) -> None:
    """Raise if predictions and targets cannot be paired one to one.

    A bare string is rejected on purpose: iterating it would silently score characters.

    Args:
        preds: Generated texts, one per sample.
        targets: References, one per sample.

    Raises:
        TypeError: If either argument is a single string instead of a sequence.
        ValueError: If the two sequences differ in length.
    """
    if isinstance(preds, str) or isinstance(targets, str):
        raise TypeError("preds and targets must be sequences of strings, not a single string")
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
