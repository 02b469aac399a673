"""Tiny copies of the real datasets, written in their published layouts (docs/data.md).

Each builder writes a few records and small generated images under ``root`` exactly where the
readers expect them, and returns what a test needs to check the reader against.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image


def image(path: Path, seed: int, size: int = 24) -> Path:
    """A small RGB image (a coloured square on noise) at ``path`` (format from the suffix)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    x, y = rng.integers(2, size // 2, 2)
    arr[y : y + size // 3, x : x + size // 3] = rng.integers(120, 255, 3, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def slake(root: Path, n_images: int = 6) -> Path:
    """``Slake1.0``: per split 3 English and 1 Chinese question per image."""
    base = root / "Slake1.0"
    qid = 0
    for file, first in (("train.json", 0), ("validate.json", 100)):
        records = []
        for k in range(n_images):
            img_id = first + k
            image(base / "imgs" / f"xmlab{img_id}" / "source.jpg", img_id)
            _json(base / "imgs" / f"xmlab{img_id}" / "detection.json", [{"Liver": [1, 2, 5, 6]}])
            mod = ("MRI", "CT", "X-Ray")[k % 3]
            for j, (q, a, t) in enumerate(
                [
                    ("Does the picture contain liver?", "Yes", "CLOSED"),
                    ("Which organ is abnormal?", "Liver, Heart", "OPEN"),
                    (f"What modality is used {k}?", mod, "OPEN"),
                    ("图片中有肝脏吗?", "是", "CLOSED"),
                ]
            ):
                qid += 1
                records.append(
                    {
                        "qid": qid,
                        "img_id": img_id,
                        "img_name": f"xmlab{img_id}/source.jpg",
                        "question": q,
                        "answer": a,
                        "q_lang": "zh" if j == 3 else "en",
                        "location": "Abdomen",
                        "modality": mod,
                        "answer_type": t,
                        "base_type": "vqa",
                        "content_type": "Organ",
                        "triple": ["vhead", "_", "_"],
                    }
                )
        _json(base / file, records)
    # The test split reuses the validation file's records (the reader only needs the file).
    (base / "test.json").write_text((base / "validate.json").read_text())
    return base


def vqa_rad(root: Path) -> Path:
    """``VQA_RAD``: 10 train (freeform/para) and 4 test (test_freeform/test_para) questions."""
    base = root / "VQA_RAD"
    phrase = ["freeform", "para"] * 5 + ["test_freeform", "test_para"] * 2
    records = []
    for i, p in enumerate(phrase):
        name = f"synpic{10000 + i // 2}.jpg"
        image(base / "VQA_RAD Image Folder" / name, 500 + i // 2)
        closed = i % 2 == 0
        records.append(
            {
                "qid": 1000 + i,
                "phrase_type": p,
                "qid_linked_id": f"link{i // 2}",
                "image_case_url": "https://example.invalid",
                "image_name": name,
                "image_organ": "CHEST",
                "evaluation": "given",
                "question": f"Is there a mass in image {i}?" if closed else f"How many ribs {i}?",
                "question_type": "PRES" if closed else "COUNT",
                "answer": "yes" if closed else i,  # numbers appear as JSON numbers
                "answer_type": "CLOSED" if closed else "OPEN ",
            }
        )
    _json(base / "VQA_RAD Dataset Public.json", records)
    return base


def pathvqa(root: Path) -> Path:
    """``pvqa``: *_vqa.pkl with one exact duplicate per split."""
    base = root / "pvqa"
    for split in ("train", "test"):
        records = []
        for i in range(6):
            image(base / "images" / split / f"{split}_{i:04d}.jpg", 900 + i)
            yes = i % 2 == 0
            records.append(
                {
                    "answer_type": "yes/no" if yes else "other",
                    "img_id": f"{split}_{i:04d}",
                    "label": {"yes" if yes else "gland": 1},
                    "question_id": 7000 + i,
                    "question_type": "is" if yes else "what",
                    "sent": f"Is this tissue inflamed {i}?" if yes else f"What is shown {i}?",
                }
            )
        records.append(dict(records[0]))  # an exact duplicate triplet
        (base / "qas").mkdir(parents=True, exist_ok=True)
        (base / "qas" / f"{split}_vqa.pkl").write_bytes(pickle.dumps(records))
    return base


def _csv_gz(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(gzip.compress(buf.getvalue().encode()))


REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with cough

 FINDINGS:

 The lungs are clear {k}.  No pleural effusion.
 Heart size is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
"""


def mimic_cxr(root: Path) -> Path:
    """``mimic-cxr-jpg``: 6 studies (4 train, 1 validate, 1 test); see the inline notes."""
    base = root / "mimic-cxr-jpg"
    split_rows, meta_rows = [], []
    for k in range(6):
        subject, study = f"100000{k:02d}", f"5000000{k}"
        folder = base / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        views = [("LATERAL", f"d{k}lat"), ("AP", f"d{k}ap"), ("PA", f"d{k}pa")]
        if k == 1:
            views = [("LATERAL", f"d{k}lat"), ("AP", f"d{k}ap")]  # no PA: AP is used
        if k == 2:
            views = [("LATERAL", f"d{k}lat")]  # no frontal view: left out
        for view, dicom in views:
            image(folder / f"{dicom}.jpg", 300 + k)
            split = "train" if k < 4 else ("validate" if k == 4 else "test")
            split_rows.append(
                {"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": split}
            )
            meta_rows.append(
                {"dicom_id": dicom, "subject_id": subject, "study_id": study, "ViewPosition": view}
            )
        report = REPORT.format(k=k)
        if k == 3:  # impression only: the findings target falls back to it
            report = " FINAL REPORT\n IMPRESSION:  Mild cardiomegaly.\n"
        folder.parent.joinpath(f"s{study}.txt").write_text(report)
    _csv_gz(base / "mimic-cxr-2.0.0-split.csv.gz", split_rows)
    _csv_gz(base / "mimic-cxr-2.0.0-metadata.csv.gz", meta_rows)
    return base


def r2gen(root: Path, n_train: int = 12, n_test: int = 6) -> Path:
    """``mimic_cxr``: R2Gen ``annotation.json`` with images under ``images/``."""
    base = root / "mimic_cxr"
    data: dict[str, list] = {"train": [], "val": [], "test": []}
    for split, n in (("train", n_train), ("val", 2), ("test", n_test)):
        for i in range(n):
            rel = f"p10/p1000{i:04d}/s5{split[:2]}{i:05d}/view{i}.jpg"
            image(base / "images" / rel, 400 + i)
            report = f"the heart size is normal . no effusion {i} ." if i % 2 else "lungs clear ."
            data[split].append(
                {
                    "id": f"{split}{i}",
                    "study_id": 50000 + i,
                    "subject_id": 10000000 + i,
                    "report": report,
                    "image_path": [rel],
                    "split": split,
                }
            )
    _json(base / "annotation.json", data)
    return base


def radgenome(root: Path, n_volumes: int = 3) -> tuple[Path, dict]:
    """``RadGenome-ChestCT``: RAS volumes 16x12x6 with a bright block per region, masks on
    exactly those voxels; returns the expected ``(slice, box)`` per ``(volume, region)``."""
    base = root / "RadGenome-ChestCT"
    expected = {}
    for prefix, csv_name in (("train", "train"), ("valid", "validation")):
        rows = []
        for v in range(n_volumes):
            name = f"{prefix}_{v + 1}_a_1.nii.gz"
            stem = name.removesuffix(".nii.gz")
            ct = np.full((16, 12, 6), -1000.0)  # air
            for r, (region, (x0, x1, y0, y1, z0, z1)) in enumerate(
                {
                    "lung": (2 + v, 9 + v, 3, 9, 1, 5),
                    "heart": (6, 10, 1 + v, 4 + v, 2, 3),
                }.items()
            ):
                # Full rectangle on the middle slice only, a smaller one on the others, so
                # both slice rules pick the middle slice and its box is the full rectangle.
                mask = np.zeros_like(ct)
                zc = z0 + (z1 - z0) // 2
                mask[x0 + 1 : x1 - 1, y0 + 1 : y1 - 1, z0:z1] = 1
                mask[x0:x1, y0:y1, zc] = 1
                ct[mask > 0] = 40.0 + 100 * r
                mdir = base / "dataset" / f"{prefix}_region_mask" / stem
                mdir.mkdir(parents=True, exist_ok=True)
                nib.save(
                    nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), mdir / f"{region}.nii.gz"
                )
                # Radiological view: column = 15 - x (right on the left), row = 11 - y.
                box = ((16 - x1) / 16, (12 - y1) / 12, (16 - x0) / 16, (12 - y0) / 12)
                expected[(stem, region)] = (zc, tuple(round(b, 2) for b in box))
                rows.append({"Volumename": name, "Anatomy": region, "Sentence": f"{region} ok."})
            rows.append({"Volumename": name, "Anatomy": "", "Sentence": "whole report."})
            vdir = (
                base
                / "dataset"
                / f"{prefix}_preprocessed"
                / f"{prefix}_{v + 1}"
                / f"{prefix}_{v + 1}a"
            )
            vdir.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(ct.astype(np.float32), np.eye(4)), vdir / name)
        (base / "radgenome_files").mkdir(parents=True, exist_ok=True)
        with (base / "radgenome_files" / f"{csv_name}_region_report.csv").open("w") as f:
            writer = csv.DictWriter(f, fieldnames=["Volumename", "Anatomy", "Sentence"])
            writer.writeheader()
            writer.writerows(rows)
    return base, expected


def aqua(root: Path, n: int = 12) -> Path:
    base = root / "aqua"
    for split, first in (("train", 0), ("val", 50), ("test", 100)):
        recs = []
        for i in range(n):
            name = f"{first + i}-painting.jpg"
            image(base / "Images" / name, 1000 + first + i)
            answer = ("people", "horse", "tree")[i % 3]
            recs.append(
                {
                    "image": name,
                    "question": f"what stand next to each other {i}",
                    "answer": answer,
                    "need_external_knowledge": i % 4 == 0,
                }
            )
        _json(base / f"{split}.json", recs)
    return base


def gqa(root: Path, n: int = 12) -> Path:
    base = root / "gqa"
    for split in ("train", "testdev"):
        data = {}
        for i in range(n):
            image_id = f"{split[0]}{2370000 + i}"
            image(base / "images" / f"{image_id}.jpg", 2000 + i)
            data[f"{split}{i:05d}"] = {
                "question": f"Is the cup to the left of the plate {i}?",
                "imageId": image_id,
                "answer": ("yes", "no", "cup")[i % 3],
                "fullAnswer": "Yes, it is.",
                "types": {"detailed": "relS", "semantic": "rel", "structural": "verify"},
                "isBalanced": True,
            }
        _json(base / f"{split}_balanced_questions.json", data)
    return base


def _ten(answers: list[tuple[str, str]]) -> list[dict]:
    return [{"answer": a, "answer_confidence": c} for a, c in answers]


def vizwiz(root: Path, n: int = 12) -> Path:
    base = root / "vizwiz"
    for split in ("train", "val"):
        recs = []
        for i in range(n):
            name = f"VizWiz_{split}_{i:08d}.jpg"
            image(base / split / name, 3000 + i)
            if i == 0:  # a tie 5:5; "soup" has more "yes" confidences and wins
                answers = _ten([("soup", "yes")] * 5 + [("can", "maybe")] * 5)
            else:
                answers = _ten([("red", "yes")] * 6 + [("blue", "no")] * 4)
            recs.append(
                {
                    "image": name,
                    "question": f"What color is this {i}?",
                    "answers": answers,
                    "answer_type": "other",
                    "answerable": 1,
                }
            )
        _json(base / "Annotations" / f"{split}.json", recs)
    return base


def vqa_abstract(root: Path, n: int = 12) -> Path:
    base = root / "vqa_abstract"
    for split in ("train", "val"):
        questions, annotations = [], []
        for i in range(n):
            image_id = 20 + i
            image(
                base
                / f"scene_img_abstract_v002_{split}2015"
                / f"abstract_v002_{split}2015_{image_id:012d}.png",
                4000 + i,
            )
            qid = image_id * 10 + 1
            yes = i % 2 == 0
            questions.append(
                {"image_id": image_id, "question": f"Is the dog sleeping {i}?", "question_id": qid}
            )
            answer = "yes" if yes else "2"
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": "is the",
                    "answer_type": "yes/no" if yes else "number",
                    "multiple_choice_answer": answer,
                    "answers": [
                        {"answer": answer, "answer_confidence": "yes", "answer_id": j}
                        for j in range(10)
                    ],
                }
            )
        _json(
            base / f"OpenEnded_abstract_v002_{split}2015_questions.json", {"questions": questions}
        )
        _json(base / f"abstract_v002_{split}2015_annotations.json", {"annotations": annotations})
    return base


def cocoqa(root: Path, n: int = 12) -> Path:
    base = root / "cocoqa"
    for split, coco in (("train", "train2014"), ("test", "val2014")):
        qs, ans, ids, types = [], [], [], []
        for i in range(n):
            img_id = 100 + i
            image(base / "images" / coco / f"COCO_{coco}_{img_id:012d}.jpg", 5000 + i)
            qs.append(f"what is the color of the bus {i} ?")
            ans.append(("red", "two", "bus", "kitchen")[i % 4])
            ids.append(str(img_id))
            types.append(str((2, 1, 0, 3)[i % 4]))
        (base / split).mkdir(parents=True, exist_ok=True)
        for name, values in (
            ("questions", qs),
            ("answers", ans),
            ("img_ids", ids),
            ("types", types),
        ):
            (base / split / f"{name}.txt").write_text("\n".join(values) + "\n")
    return base


def fedvlmbench(root: Path, clients: int = 2, n_train: int = 20, n_test: int = 6) -> Path:
    """``fedvlmbench``: LLaVA files ``train/client_<i>.json``, ``test/client_<i>.json``."""
    base = root / "fedvlmbench"
    for c in range(1, clients + 1):
        for split, n in (("train", n_train), ("test", n_test)):
            recs = []
            for i in range(n):
                name = f"c{c}_{split}_{i}.png"
                image(base / "image" / name, 6000 + 100 * c + i)
                answer = ("yes", "no", "liver")[i % 3]
                recs.append(
                    {
                        "id": f"c{c}-{split}-{i}",
                        "image": name,
                        "answer_type": "CLOSED" if answer in ("yes", "no") else "OPEN",
                        "conversations": [
                            {"from": "human", "value": f"<image>\nIs the liver visible {i}?"},
                            {"from": "gpt", "value": answer},
                        ],
                    }
                )
            _json(base / split / f"client_{c}.json", recs)
    return base


def everything(root: Path) -> dict:
    """Every dataset above under ``root``; returns the RadGenome expectations."""
    slake(root)
    vqa_rad(root)
    pathvqa(root)
    mimic_cxr(root)
    r2gen(root)
    _, boxes = radgenome(root)
    aqua(root)
    gqa(root)
    vizwiz(root)
    vqa_abstract(root)
    cocoqa(root)
    fedvlmbench(root)
    return {"radgenome_boxes": boxes}
