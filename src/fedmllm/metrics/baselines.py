"""Trivial baselines: the prediction a model makes if it learns only the training prior.

A federated method that does not beat these on a client has learned nothing from its images.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from fedmllm.metrics.box_parse import Box, format_box, parse_box

__all__ = [
    "format_box",
    "majority_answer",
    "mean_box",
    "most_common_text",
    "parse_box",
    "trivial_prediction",
    "trivial_predictions",
]


def majority_answer(train_answers: Sequence[str]) -> str:
    """The most frequent training answer; ties go to the lexicographically smallest.

    Args:
        train_answers: Answers of the training split, compared as written.

    Returns:
        The majority answer.

    Raises:
        ValueError: If there are no answers.
    """
    if not train_answers:
        raise ValueError("majority_answer needs at least one training answer")
    counts = Counter(train_answers)
    # Sort key: highest count first, then the string itself, so ties are deterministic.
    return min(counts, key=lambda a: (-counts[a], a))


def most_common_text(train_texts: Sequence[str]) -> str:
    """The most frequent training text (e.g. a normal report); ties lexicographically.

    Args:
        train_texts: Target texts of the training split.

    Returns:
        The most common text.

    Raises:
        ValueError: If there are no texts.
    """
    return majority_answer(train_texts)


def mean_box(train_boxes: Sequence[Sequence[float]]) -> Box:
    """Coordinate-wise mean of the training boxes.

    Args:
        train_boxes: Boxes ``(x1, y1, x2, y2)``.

    Returns:
        The mean box.

    Raises:
        ValueError: If there are no boxes or one does not hold four coordinates.
    """
    if not train_boxes:
        raise ValueError("mean_box needs at least one training box")
    if any(len(b) != 4 for b in train_boxes):
        raise ValueError("every box must hold 4 coordinates")
    n = len(train_boxes)
    x1, y1, x2, y2 = (sum(float(b[i]) for b in train_boxes) / n for i in range(4))
    return (x1, y1, x2, y2)


def trivial_prediction(task: str, train_targets: Sequence[str]) -> str:
    """The trivial baseline's prediction text for a task, from the training targets.

    Args:
        task: ``"vqa"`` or ``"classification"`` (majority answer), ``"report"`` (most common
            report) or ``"detection"`` (mean training box, formatted like the targets).
        train_targets: Target texts of the training split.

    Returns:
        The text the baseline predicts for every test sample.

    Raises:
        ValueError: For an unknown task, no targets, or a detection target without a box.
    """
    if task in ("vqa", "classification"):  # classification: the majority training label
        return majority_answer(train_targets)
    if task == "report":
        return most_common_text(train_targets)
    if task == "detection":
        boxes = []
        for text in train_targets:
            box = parse_box(text)
            if box is None:
                raise ValueError(f"cannot parse a box from training target {text!r}")
            boxes.append(box)
        return format_box(mean_box(boxes))
    raise ValueError(
        f"unknown task {task!r}; expected one of 'vqa', 'report', 'detection', 'classification'"
    )


def trivial_predictions(task: str, train_targets: Sequence[str], num: int) -> list[str]:
    """The trivial baseline's predictions for ``num`` test samples (all the same text).

    Args:
        task: See :func:`trivial_prediction`.
        train_targets: Target texts of the training split.
        num: Number of test samples.

    Returns:
        ``num`` copies of :func:`trivial_prediction`.
    """
    return [trivial_prediction(task, train_targets)] * num
