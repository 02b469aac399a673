"""The generic LLaVA conversation JSON, so any hospital can bring its own data.

A file is a JSON array of ``{"id", "image": "<relative path>", "conversations": [{"from":
"human", "value": "<image>\\n<question>"}, {"from": "gpt", "value": "<answer>"}, ...]}``.
Every human/gpt pair becomes one sample (the ``<image>`` token is removed; the prompt template
puts it back). Optional per-record keys: ``task`` (``vqa``/``report``/``detection``),
``answer_type`` (``CLOSED``/``OPEN``), ``modality``, ``box``. Records without ``image`` are
text-only samples.

Detection answers hold a box in brackets (``"... are [x1, y1, x2, y2]"``); ``box_format``
says whether the four numbers are corners (``xyxy``) or corner plus size (``xywh``, as in the
Fed-Med release of FedVLMBench); pixel values (any number above 1) are normalised by the
image's size.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PIL import Image

from fedmllm.data.readers.common import as_list, read_json, text
from fedmllm.data.schema import TASKS, Sample

IMAGE_TOKEN = "<image>"
BOX_FORMATS = ("xyxy", "xywh")
_BOX = re.compile(r"\[\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\]")


def parse_box(
    answer: str, box_format: str = "xyxy", image: Path | None = None
) -> tuple[float, float, float, float] | None:
    """The last bracketed four-number box of ``answer`` as normalised ``(x1, y1, x2, y2)``.

    Returns ``None`` when there is no box, or when it is in pixels and the image cannot be read.
    """
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    matches = _BOX.findall(answer)
    if not matches:
        return None
    try:
        a, b, c, d = (float(v) for v in matches[-1])
    except ValueError:
        return None
    x1, y1, x2, y2 = (a, b, a + c, b + d) if box_format == "xywh" else (a, b, c, d)
    if max(x1, y1, x2, y2) > 1.0:
        if image is None or not image.exists():
            return None
        try:
            with Image.open(image) as img:  # reads the header only
                w, h = img.size
        except OSError:
            return None
        x1, x2, y1, y2 = x1 / w, x2 / w, y1 / h, y2 / h
    return (round(x1, 4), round(y1, 4), round(x2, 4), round(y2, 4))


def _pairs(conversations: Any) -> list[tuple[str, str]]:
    """(question, answer) pairs of alternating human/gpt turns; malformed turns end the list."""
    pairs = []
    turns = conversations if isinstance(conversations, list) else []
    for human, gpt in zip(turns[0::2], turns[1::2], strict=False):
        if not (isinstance(human, dict) and isinstance(gpt, dict)):
            break
        if human.get("from") != "human" or gpt.get("from") != "gpt":
            break
        question = text(str(human.get("value", "")).replace(IMAGE_TOKEN, " "))
        pairs.append((question, text(gpt.get("value"))))
    return pairs


def read_llava(
    path: str | Path,
    image_folder: str | Path | None = None,
    task: str = "vqa",
    modality: str = "unknown",
    box_format: str = "xyxy",
    dataset: str = "llava",
) -> list[Sample]:
    """Samples of one LLaVA conversation file.

    Args:
        path: The JSON file.
        image_folder: Folder the ``image`` paths are relative to (default: the file's folder).
        task: Task of records without a ``task`` key.
        modality: Modality of records without a ``modality`` key.
        box_format: ``xyxy`` or ``xywh`` for detection answers.
        dataset: Name used in ids and errors.

    Returns:
        One sample per human/gpt pair; a record without any pair gives one sample with an
        empty question, which validation reports.
    """
    path = Path(path)
    if task not in TASKS:
        raise ValueError(f"{dataset}: task {task!r} is not one of {TASKS}")
    records = as_list(read_json(path, dataset, "conversation file"), path, dataset)
    folder = Path(image_folder) if image_folder is not None else path.parent
    out = []
    for i, rec in enumerate(records):
        rec = rec if isinstance(rec, dict) else {}
        rid = text(rec.get("id")) or f"#{i}"
        image = folder / text(rec["image"]) if rec.get("image") else None
        rec_task = text(rec.get("task")) or task
        kind = text(rec.get("answer_type")).lower() or None
        for j, (question, answer) in enumerate(_pairs(rec.get("conversations")) or [("", "")]):
            meta = {"id": f"{dataset}/{rid}" + (f"/{j}" if j else ""), "source": dataset}
            meta["record_file"] = str(path)
            box = None
            if rec_task == "detection":
                box = parse_box(answer, box_format, image)
            out.append(
                Sample(
                    str(image) if image is not None else None,
                    text(rec.get("modality")) or modality,
                    question,
                    answer,
                    rec_task,
                    kind if rec_task == "vqa" else None,
                    box,
                    meta,
                )
            )
    return out
