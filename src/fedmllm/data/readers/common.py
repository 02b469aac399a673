"""Helpers every dataset reader shares: expected files, JSON/CSV loading, clear errors."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

from fedmllm.data.schema import Sample

DOCS = "docs/data.md"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is not where the reader expects it."""


def expect(path: Path, dataset: str, what: str = "file") -> Path:
    """``path`` if it exists, else a :class:`DatasetNotFoundError` saying what was expected.

    Args:
        path: The expected file or directory.
        dataset: Dataset name, also the anchor of its section in ``docs/data.md``.
        what: What the path should hold (e.g. "annotation file", "image folder").
    """
    if not path.exists():
        raise DatasetNotFoundError(
            f"{dataset}: expected the {what} {path} but it does not exist. See {DOCS} "
            f"(section '{dataset}') for how to obtain {dataset} and lay it out under "
            "paths.data_dir "
            "(or point paths.data_dir=<dir> at it)."
        )
    return path


def read_json(path: Path, dataset: str, what: str = "annotation file") -> Any:
    """Parse a JSON file, naming it on failure."""
    expect(path, dataset, what)
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{dataset}: {path} is not valid JSON ({err})") from err


def read_csv(path: Path, dataset: str, what: str = "table") -> list[dict[str, str]]:
    """Rows of a CSV file (``.csv`` or ``.csv.gz``) as dicts, naming the file on failure."""
    expect(path, dataset, what)
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        return list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{dataset}: cannot read {path} ({err})") from err


def require_columns(rows: list[dict[str, str]], columns: tuple[str, ...], path: Path) -> None:
    """Raise naming the file and the missing columns when ``rows`` lack any of ``columns``."""
    if rows:
        missing = [c for c in columns if c not in rows[0]]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {list(rows[0])}")


def as_list(data: Any, path: Path, dataset: str) -> list[Any]:
    """``data`` if it is a JSON array, else an error naming the file."""
    if not isinstance(data, list):
        raise ValueError(f"{dataset}: {path} should hold a JSON array, got {type(data).__name__}")
    return data


def text(value: Any) -> str:
    """A record field as stripped text (numbers such as VQA-RAD answers become strings)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def lines(path: Path, dataset: str, what: str) -> list[str]:
    """The lines of a text file without their line breaks."""
    expect(path, dataset, what)
    return path.read_text(encoding="utf-8").splitlines()


def first_existing(candidates: list[Path]) -> Path | None:
    """The first of ``candidates`` that exists."""
    return next((p for p in candidates if p.exists()), None)


def record_meta(
    source: str, record_id: object, split: str, path: Path, **extra: Any
) -> dict[str, Any]:
    """A record's provenance: ``id`` (``<source>/<record id>``), ``source``, ``split`` and
    ``record_file`` (the file validation errors should name), then ``extra``."""
    meta = {"id": f"{source}/{record_id}", "source": source, "split": split}
    return {**meta, "record_file": str(path), **extra}


def vqa_sample(
    image: str | Path, modality: str, question: str, answer: str, kind: str | None, meta: dict
) -> Sample:
    """A ``task="vqa"`` sample of an image file with answer type ``kind``."""
    return Sample(str(image), modality, question, answer, "vqa", kind, meta=meta)
