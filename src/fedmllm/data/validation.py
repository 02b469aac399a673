"""Record validation at benchmark build time, so a bad record never crashes a training batch.

Every record is checked once when a benchmark is built: its task, question, answer, answer
type, box (normalised, ``x1 < x2``, ``y1 < y2``) and image (present on disk and decodable, or a
well-formed array). By default the first bad record raises :class:`InvalidRecordError` naming
the dataset, the record id, the image file and (when known) the annotation file it came from;
with ``skip_invalid=True`` bad records are dropped and counted, and the counts travel to
``results.json`` through ``Benchmark.validation``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmllm.data.imaging import ImageError, ImageRef, read_image
from fedmllm.data.schema import Sample, validate_sample

log = logging.getLogger(__name__)
_EXAMPLES = 5


class InvalidRecordError(ValueError):
    """A dataset record breaks the sample schema or points to a bad image."""


@dataclass
class ValidationReport:
    """Counts of one benchmark build.

    Attributes:
        checked: Records checked.
        skipped: Records dropped (only with ``skip_invalid``).
        reasons: Reason category (see :func:`category`) -> count of skipped records.
        by_dataset: Dataset -> ``{"checked": n, "skipped": m}``.
        examples: The first few skipped records, in full.
    """

    checked: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    by_dataset: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts (what ``results.json`` stores under ``validation``)."""
        return {
            "checked": self.checked,
            "skipped": self.skipped,
            "reasons": dict(sorted(self.reasons.items())),
            "by_dataset": self.by_dataset,
            "examples": list(self.examples),
        }


def image_file(sample: Sample) -> str | None:
    """The image file of ``sample`` (``None`` for arrays and text-only samples)."""
    if sample.image is None or isinstance(sample.image, np.ndarray):
        return None
    return os.fspath(sample.image)


def _reason(exc: Exception) -> str:
    """The message of a schema error without its ``where:`` prefix."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


# Reason categories counted in ``ValidationReport.reasons`` (first match wins).
_CATEGORIES = (
    ("image missing", "image missing"),
    ("image unreadable", "image unreadable"),
    ("image decodes", "image unreadable"),
    ("image array", "bad image array"),
    ("empty question", "empty question"),
    ("empty answer", "empty answer"),
    ("is not one of ('vqa'", "unknown task"),
    ("answer_type", "bad answer_type"),
    ("without box", "detection without box"),
    ("inverted", "box inverted"),
    ("outside [0, 1]", "box outside [0, 1]"),
    ("not four numbers", "box malformed"),
)


def category(reason: str) -> str:
    """The counted category of a reason (``reader: ...`` for problems a reader flagged)."""
    for needle, name in _CATEGORIES:
        if needle in reason:
            return name
    return "reader: " + reason.split(" (")[0][:60]


def _box_problem(box: Any) -> str | None:
    if len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
        return f"box {box} is not four numbers"
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        return f"box {tuple(box)} is outside [0, 1]"
    if not (x1 < x2 and y1 < y2):
        return f"box {tuple(box)} is inverted or empty (needs x1 < x2 and y1 < y2)"
    return None


def check_sample(sample: Sample, decoded: dict[str, str | None] | None = None) -> str | None:
    """Why ``sample`` is invalid, or ``None`` when it is fine.

    Args:
        sample: The record.
        decoded: Cache of image checks (file key -> problem or ``None``), shared across the
            records of one build so an image used by many questions is decoded once.
    """
    if sample.meta.get("problem"):  # a reader flagged the record (e.g. a missing mask)
        return str(sample.meta["problem"])
    if sample.box is not None and (problem := _box_problem(sample.box)):
        return problem
    try:
        validate_sample(sample, where="record")
    except (ValueError, TypeError) as exc:
        return _reason(exc)
    path = image_file(sample)
    if path is None:
        return None
    key = repr(sample.image) if isinstance(sample.image, ImageRef) else path
    cache = decoded if decoded is not None else {}
    if key not in cache:
        cache[key] = _image_problem(sample.image)
    return cache[key]


def _image_problem(image: Any) -> str | None:
    if not os.path.exists(os.fspath(image)):
        return "image missing"
    try:
        arr = read_image(image)
    except ImageError as exc:
        return f"image unreadable ({_reason(exc)})"
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        return f"image decodes to shape {arr.shape}"
    return None


def validate_records(
    dataset: str,
    samples: Iterable[Sample],
    report: ValidationReport,
    skip_invalid: bool = False,
    decoded: dict[str, str | None] | None = None,
) -> list[Sample]:
    """Check every record of one dataset; return the valid ones.

    Args:
        dataset: Name used in errors and counts (e.g. ``slake/train``).
        samples: The records; ``meta["id"]`` and ``meta["record_file"]`` are used in errors.
        report: Accumulates the counts.
        skip_invalid: Drop and count bad records instead of raising.
        decoded: Shared image-check cache (see :func:`check_sample`).

    Raises:
        InvalidRecordError: On the first bad record unless ``skip_invalid``.
    """
    cache = decoded if decoded is not None else {}
    kept: list[Sample] = []
    counts = report.by_dataset.setdefault(dataset, {"checked": 0, "skipped": 0})
    for i, sample in enumerate(samples):
        report.checked += 1
        counts["checked"] += 1
        reason = check_sample(sample, cache)
        if reason is None:
            kept.append(sample)
            continue
        where = describe(dataset, sample, i)
        if not skip_invalid:
            raise InvalidRecordError(
                f"{where}: {reason}. Fix or remove the record, or pass "
                "benchmark.skip_invalid=true to "
                "skip invalid records (see docs/data.md)"
            )
        report.skipped += 1
        counts["skipped"] += 1
        report.reasons[category(reason)] += 1
        if len(report.examples) < _EXAMPLES:
            report.examples.append(f"{where}: {reason}")
    if counts["skipped"]:
        log.warning("%s: skipped %d invalid record(s)", dataset, counts["skipped"])
    return kept


def describe(dataset: str, sample: Sample, index: int) -> str:
    """``dataset <source> (<split>), record <id>, file <image>[, from <annotation file>]``."""
    record = sample.meta.get("id", f"#{index}")
    source = sample.meta.get("source")
    name = f"{source} ({dataset})" if source and source not in dataset else dataset
    parts = [f"dataset {name}", f"record {record}", f"file {image_file(sample) or '-'}"]
    if sample.meta.get("record_file"):
        parts.append(f"from {sample.meta['record_file']}")
    return ", ".join(parts)
