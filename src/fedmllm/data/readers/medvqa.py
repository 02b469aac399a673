"""Medical VQA readers: SLAKE, VQA-RAD and PathVQA in their published layouts.

Each reader returns ``Sample``s with ``task="vqa"``, an ``answer_type`` (``closed`` for yes/no
style questions, ``open`` otherwise, from the dataset's own field), the image path, and
``meta`` holding ``id`` (``<dataset>/<question id>``), ``source``, ``split`` and
``record_file`` (the annotation file), so validation errors can name the record.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

from fedmllm.data.readers.common import (
    as_list,
    expect,
    first_existing,
    read_json,
    record_meta,
    text,
    vqa_sample,
)
from fedmllm.data.schema import Sample

log = logging.getLogger(__name__)

_SLAKE_SPLITS = {"train": ("train.json",), "val": ("validate.json", "validation.json")}
_SLAKE_SPLITS["test"] = ("test.json",)
_SLAKE_MODALITY = {"mri": "mri", "ct": "ct", "x-ray": "xray", "xray": "xray"}


def _answer_type(value: object) -> str | None:
    """``CLOSED``/``OPEN`` (any case, stray spaces) -> ``closed``/``open``; else ``None``."""
    v = text(value).lower()
    return v if v in ("closed", "open") else None


def _sample(image: Path, modality: str, rec: dict, meta: dict) -> Sample:
    """SLAKE's and VQA-RAD's record: ``question``, ``answer`` and ``answer_type`` fields."""
    question, answer = text(rec.get("question")), text(rec.get("answer"))
    return vqa_sample(image, modality, question, answer, _answer_type(rec.get("answer_type")), meta)


def read_slake(root: str | Path, split: str = "train", language: str | None = "en") -> list[Sample]:
    """SLAKE: ``<root>/{train,validate|validation,test}.json`` and ``<root>/imgs/``.

    Args:
        root: The ``Slake1.0`` folder.
        split: ``train``, ``val`` or ``test``.
        language: Keep questions with this ``q_lang`` (``None``: all).
    """
    root = Path(root)
    if split not in _SLAKE_SPLITS:
        raise ValueError(f"slake: unknown split {split!r}; use {sorted(_SLAKE_SPLITS)}")
    candidates = [root / name for name in _SLAKE_SPLITS[split]]
    path = first_existing(candidates) or candidates[0]
    records = as_list(read_json(path, "slake"), path, "slake")
    expect(root / "imgs", "slake", "image folder")
    samples = []
    for i, rec in enumerate(records):
        if language is not None and rec.get("q_lang") != language:
            continue
        qid = rec.get("qid", f"#{i}")
        modality = _SLAKE_MODALITY.get(text(rec.get("modality")).lower(), "radiology")
        content, organ = rec.get("content_type"), rec.get("location")
        meta = record_meta("slake", qid, split, path, content_type=content, organ=organ)
        image = root / "imgs" / text(rec.get("img_name"))
        samples.append(_sample(image, modality, rec, meta))
    return samples


VQA_RAD_JSON = "VQA_RAD Dataset Public.json"
VQA_RAD_IMAGES = "VQA_RAD Image Folder"
_VQA_RAD_SPLITS = {"train": ("freeform", "para"), "test": ("test_freeform", "test_para")}


def read_vqa_rad(root: str | Path, split: str = "train") -> list[Sample]:
    """VQA-RAD: ``<root>/VQA_RAD Dataset Public.json`` and ``<root>/VQA_RAD Image Folder/``.

    The split follows ``phrase_type``: train = ``freeform``/``para``, test =
    ``test_freeform``/``test_para``. Numeric answers are turned into text.
    """
    root = Path(root)
    if split not in _VQA_RAD_SPLITS:
        raise ValueError(f"vqa_rad: unknown split {split!r}; use {sorted(_VQA_RAD_SPLITS)}")
    path = root / VQA_RAD_JSON
    records = as_list(read_json(path, "vqa_rad"), path, "vqa_rad")
    images = expect(root / VQA_RAD_IMAGES, "vqa_rad", "image folder")
    samples = []
    for i, rec in enumerate(records):
        if text(rec.get("phrase_type")).lower() not in _VQA_RAD_SPLITS[split]:
            continue
        organ, qtype = rec.get("image_organ"), rec.get("question_type")
        meta = record_meta(
            "vqa_rad", rec.get("qid", f"#{i}"), split, path, organ=organ, question_type=qtype
        )
        samples.append(_sample(images / text(rec.get("image_name")), "radiology", rec, meta))
    return samples


def _load_pickle(path: Path) -> list[dict]:
    # Pickle runs code from the file: only point the reader at PathVQA files you trust.
    with path.open("rb") as handle:
        try:
            data = pickle.load(handle)  # noqa: S301
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as err:
            raise ValueError(f"pathvqa: {path} is not a readable pickle ({err})") from err
    return as_list(data, path, "pathvqa")


def read_pathvqa(root: str | Path, split: str = "train") -> list[Sample]:
    """PathVQA: ``<root>/qas/{split}_vqa.pkl`` (or ``qas/{split}/{split}_qa.pkl``) and
    ``<root>/images/{split}/<image>.jpg``; exact duplicate triplets are dropped.

    Args:
        root: The ``pvqa`` folder.
        split: ``train``, ``val`` or ``test``.
    """
    root = Path(root)
    vqa = root / "qas" / f"{split}_vqa.pkl"
    qa = root / "qas" / split / f"{split}_qa.pkl"
    path = first_existing([vqa, qa]) or vqa
    records = _load_pickle(expect(path, "pathvqa", "QA pickle"))
    images = expect(root / "images" / split, "pathvqa", "image folder")
    samples, seen = [], set()
    for i, rec in enumerate(records):
        if "sent" in rec:  # *_vqa.pkl: question in "sent", answer the key of "label"
            label = rec.get("label") or {}
            answer = max(label, key=label.get) if isinstance(label, dict) and label else ""
            image, question = text(rec.get("img_id")), text(rec.get("sent"))
            closed = text(rec.get("answer_type")).lower() == "yes/no"
            qid = rec.get("question_id", f"#{i}")
        else:  # {split}_qa.pkl
            image, question, answer = (text(rec.get(k)) for k in ("image", "question", "answer"))
            closed, qid = text(answer).lower() in ("yes", "no"), f"#{i}"
        answer = text(answer)
        if (image, question, answer) in seen:
            continue
        seen.add((image, question, answer))
        meta = record_meta("pathvqa", qid, split, path)
        kind, image_file = ("closed" if closed else "open"), images / f"{image}.jpg"
        samples.append(vqa_sample(image_file, "pathology", question, answer, kind, meta))
    dropped = len(records) - len(samples)
    if dropped:
        log.info("pathvqa/%s: dropped %d exact duplicate QA triplets", split, dropped)
    return samples
