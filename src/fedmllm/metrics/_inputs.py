"""Input checks and reference handling shared by the text metrics."""

from __future__ import annotations

from collections.abc import Sequence

Target = str | Sequence[str]
"""One sample's reference: a string, or several acceptable references."""


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


def references(target: Target) -> list[str]:
    """The references of one sample: ``"a"`` -> ``["a"]``, ``["a", "b"]`` -> ``["a", "b"]``.

    Args:
        target: One reference string or a non-empty sequence of them.

    Returns:
        The references as a list.

    Raises:
        ValueError: If a sequence of references is empty.
        TypeError: If a reference is not a string.
    """
    refs = [target] if isinstance(target, str) else list(target)
    if not refs:
        raise ValueError("a sample needs at least one reference; got an empty list")
    for ref in refs:
        if not isinstance(ref, str):
            raise TypeError(f"a reference must be a string, got {type(ref).__name__}: {ref!r}")
    return refs


def check_answer_types(answer_types: Sequence[str | None] | None, n: int) -> list[str | None]:
    """Validate the optional per-sample answer types (``"closed"``, ``"open"`` or None).

    Args:
        answer_types: One entry per sample, or None when the data set has no such field.
        n: Number of samples in the batch.

    Returns:
        A list of ``n`` entries (all None when ``answer_types`` is None).

    Raises:
        ValueError: On a length mismatch or an unknown answer type.
    """
    if answer_types is None:
        return [None] * n
    if isinstance(answer_types, str) or len(answer_types) != n:
        raise ValueError(f"answer_types must hold one entry per sample ({n})")
    for t in answer_types:
        if t not in (None, "closed", "open"):
            raise ValueError(f"answer_type {t!r} is not 'closed', 'open' or None")
    return list(answer_types)
