"""The five Fed-VQA sources in their published layouts: AQUA, GQA, VizWiz, VQA Abstract
Scenes and COCO-QA. Every reader returns ``task="vqa"`` samples whose ``modality`` names the
visual domain (``art``, ``photo``, ``blind_photo``, ``cartoon``, ``coco``) and whose ``meta``
holds ``id``, ``source``, ``split`` and ``record_file``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fedmllm.data.readers.common import (
    as_list,
    expect,
    first_existing,
    lines,
    read_json,
    record_meta,
    text,
    vqa_sample,
)
from fedmllm.data.schema import Sample


def _sample(
    image: Path, modality: str, question: str, answer: str, meta: dict, answer_type: str | None
) -> Sample:
    """A VQA sample; without the source's own answer type, a yes/no answer is closed."""
    closed = answer.lower() in ("yes", "no")
    kind = answer_type or ("closed" if closed else "open")
    return vqa_sample(image, modality, question, answer, kind, meta)


def read_aqua(
    root: str | Path, split: str = "train", images: str | Path | None = None
) -> list[Sample]:
    """AQUA: ``<root>/{train,val,test}.json`` (``image, question, answer,
    need_external_knowledge``) with SemArt paintings in ``<root>/Images/`` (or ``images``)."""
    root = Path(root)
    path = root / f"{split}.json"
    records = as_list(read_json(path, "aqua"), path, "aqua")
    image_dir = expect(Path(images) if images else root / "Images", "aqua", "image folder")
    out = []
    for i, rec in enumerate(records):
        knowledge = bool(rec.get("need_external_knowledge", False))
        meta = record_meta("aqua", f"{split}/{i}", split, path, external_knowledge=knowledge)
        answer = text(rec.get("answer"))
        out.append(
            _sample(
                image_dir / text(rec.get("image")),
                "art",
                text(rec.get("question")),
                answer,
                meta,
                None,
            )
        )
    return out


def read_gqa(root: str | Path, split: str = "train") -> list[Sample]:
    """GQA: ``<root>/{split}_balanced_questions.json`` (a dict keyed by question id) and
    ``<root>/images/<imageId>.jpg``; ``split`` is e.g. ``train``, ``val`` or ``testdev``."""
    root = Path(root)
    path = root / f"{split}_balanced_questions.json"
    data = read_json(path, "gqa")
    if not isinstance(data, dict):
        raise ValueError(f"gqa: {path} should hold a JSON object keyed by question id")
    image_dir = expect(root / "images", "gqa", "image folder")
    out = []
    for qid, rec in data.items():
        structural = (rec.get("types") or {}).get("structural")
        meta = record_meta("gqa", qid, split, path, structural=structural)
        answer = text(rec.get("answer"))
        image = image_dir / f"{text(rec.get('imageId'))}.jpg"
        out.append(_sample(image, "photo", text(rec.get("question")), answer, meta, None))
    return out


def majority_answer(answers: list[dict]) -> str:
    """The most frequent of VizWiz/VQA's ten answers; ties go to more ``yes`` confidences,
    then to the alphabetically first answer (deterministic)."""
    counts = Counter(text(a.get("answer")) for a in answers if text(a.get("answer")))
    if not counts:
        return ""
    sure = Counter(text(a.get("answer")) for a in answers if a.get("answer_confidence") == "yes")
    return min(counts, key=lambda a: (-counts[a], -sure[a], a))


def read_vizwiz(root: str | Path, split: str = "train") -> list[Sample]:
    """VizWiz: ``<root>/Annotations/{split}.json`` (or ``<root>/{split}.json``), images in
    ``<root>/{split}/``; the target is the most frequent of the ten answers."""
    root = Path(root)
    candidates = [root / "Annotations" / f"{split}.json", root / f"{split}.json"]
    path = first_existing(candidates) or candidates[0]
    records = as_list(read_json(path, "vizwiz"), path, "vizwiz")
    image_dir = expect(root / split, "vizwiz", "image folder")
    out = []
    for i, rec in enumerate(records):
        image = text(rec.get("image"))
        meta = record_meta("vizwiz", image or i, split, path, answerable=rec.get("answerable"))
        answer = majority_answer(rec.get("answers") or [])
        kind = "closed" if rec.get("answer_type") == "yes/no" else "open"
        out.append(
            _sample(image_dir / image, "blind_photo", text(rec.get("question")), answer, meta, kind)
        )
    return out


def read_vqa_abstract(root: str | Path, split: str = "train") -> list[Sample]:
    """VQA Abstract Scenes (VQA v1 format): ``OpenEnded_abstract_v002_{split}2015_questions.json``
    and ``abstract_v002_{split}2015_annotations.json`` in ``<root>``; images
    ``abstract_v002_{split}2015_%012d.png`` in ``<root>/scene_img_abstract_v002_{split}2015/``
    (or ``<root>`` itself). The target is ``multiple_choice_answer``."""
    root = Path(root)
    qpath = root / f"OpenEnded_abstract_v002_{split}2015_questions.json"
    apath = root / f"abstract_v002_{split}2015_annotations.json"
    questions = read_json(qpath, "vqa_abstract").get("questions", [])
    annotations = read_json(apath, "vqa_abstract").get("annotations", [])
    by_qid = {a.get("question_id"): a for a in annotations}
    folder = root / f"scene_img_abstract_v002_{split}2015"
    image_dir = folder if folder.exists() else root
    out = []
    for q in questions:
        qid = q.get("question_id")
        ann = by_qid.get(qid, {})
        image = image_dir / f"abstract_v002_{split}2015_{int(q.get('image_id', -1)):012d}.png"
        qtype = ann.get("question_type")
        meta = record_meta("vqa_abstract", qid, split, apath, question_type=qtype)
        kind = "closed" if ann.get("answer_type") == "yes/no" else "open"
        answer = text(ann.get("multiple_choice_answer"))
        out.append(_sample(image, "cartoon", text(q.get("question")), answer, meta, kind))
    return out


COCOQA_TYPES = {"0": "object", "1": "number", "2": "color", "3": "location"}


def read_cocoqa(
    root: str | Path, split: str = "train", coco: str | Path | None = None
) -> list[Sample]:
    """COCO-QA: ``<root>/{train,test}/{questions,answers,img_ids,types}.txt`` (line-aligned);
    images are COCO-2014 (train from ``train2014/``, test from ``val2014/`` under ``coco``,
    default ``<root>/images``)."""
    root = Path(root)
    folder = root / split
    files = {
        k: lines(folder / f"{k}.txt", "cocoqa", f"{k} file")
        for k in ("questions", "answers", "img_ids")
    }
    types_file = folder / "types.txt"
    types = lines(types_file, "cocoqa", "types file") if types_file.exists() else []
    n = len(files["questions"])
    if any(len(v) != n for v in files.values()):
        sizes = {k: len(v) for k, v in files.items()}
        raise ValueError(f"cocoqa: {folder} files are not line-aligned: {sizes}")
    coco_split = "train2014" if split == "train" else "val2014"
    image_dir = expect(
        (Path(coco) if coco else root / "images") / coco_split, "cocoqa", "COCO image folder"
    )
    out = []
    for i in range(n):
        img_id = int(files["img_ids"][i].strip())
        image = image_dir / f"COCO_{coco_split}_{img_id:012d}.jpg"
        qtype = COCOQA_TYPES.get(types[i].strip()) if i < len(types) else None
        record = folder / "questions.txt"
        meta = record_meta("cocoqa", f"{split}/{i}", split, record, line=i + 1, question_type=qtype)
        answer = text(files["answers"][i])
        out.append(_sample(image, "coco", text(files["questions"][i]), answer, meta, "open"))
    return out
