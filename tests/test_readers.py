"""Each real-dataset reader on a tiny fixture written in the dataset's published layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import real_fixtures as rf

from fedmllm.data.imaging import ImageRef, read_image
from fedmllm.data.readers.common import DatasetNotFoundError
from fedmllm.data.readers.llava import parse_box, read_llava
from fedmllm.data.readers.medvqa import read_pathvqa, read_slake, read_vqa_rad
from fedmllm.data.readers.mimic import read_mimic_cxr, read_r2gen, report_target
from fedmllm.data.readers.radgenome import read_radgenome
from fedmllm.data.readers.vqa_sources import (
    read_aqua,
    read_cocoqa,
    read_gqa,
    read_vizwiz,
    read_vqa_abstract,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets")


def _images_exist(samples) -> bool:
    return all(Path(s.image).exists() for s in samples)


def test_slake_keeps_english_and_maps_fields(root: Path) -> None:
    # Prepare: 6 images x (3 English + 1 Chinese) questions in train.json.
    base = rf.slake(root)
    # Execute
    train = read_slake(base, "train")
    everything = read_slake(base, "train", language=None)
    val = read_slake(base, "val")  # validate.json
    # Assert
    assert (len(train), len(everything), len(val)) == (18, 24, 18)
    first = train[0]
    assert (first.question, first.answer, first.answer_type) == (
        "Does the picture contain liver?",
        "Yes",
        "closed",
    )
    assert first.modality == "mri" and train[5].modality == "ct" and train[8].modality == "xray"
    assert train[1].answer == "Liver, Heart" and train[1].answer_type == "open"
    assert first.image == str(base / "imgs" / "xmlab0" / "source.jpg") and _images_exist(train)
    assert first.meta["id"] == "slake/1" and first.meta["record_file"].endswith("train.json")


def test_vqa_rad_splits_by_phrase_type_and_stringifies_answers(root: Path) -> None:
    base = rf.vqa_rad(root)
    train, test = read_vqa_rad(base, "train"), read_vqa_rad(base, "test")
    assert (len(train), len(test)) == (10, 4)
    assert train[1].answer == "1" and train[1].answer_type == "open"  # JSON 1, "OPEN "
    assert train[0].answer == "yes" and train[0].answer_type == "closed"
    assert {s.meta["id"] for s in test} == {f"vqa_rad/{q}" for q in (1010, 1011, 1012, 1013)}
    assert _images_exist(train + test)


def test_pathvqa_reads_labels_and_drops_duplicates(root: Path) -> None:
    base = rf.pathvqa(root)
    train = read_pathvqa(base, "train")
    assert len(train) == 6  # 7 records, one exact duplicate
    assert [s.answer for s in train[:2]] == ["yes", "gland"]
    assert [s.answer_type for s in train[:2]] == ["closed", "open"]
    assert train[0].image == str(base / "images" / "train" / "train_0000.jpg")


def test_mimic_cxr_picks_frontal_views_and_findings(root: Path) -> None:
    # Prepare: studies 0-3 train (1: AP only, 2: lateral only, 3: impression only), 4 validate.
    base = rf.mimic_cxr(root)
    # Execute
    train = read_mimic_cxr(base, "train")
    val = read_mimic_cxr(base, "val")
    impressions = read_mimic_cxr(base, "train", section="impression")
    # Assert
    assert [s.meta["id"] for s in train] == [
        "mimic_cxr/s50000000",
        "mimic_cxr/s50000001",
        "mimic_cxr/s50000003",
    ]
    assert [Path(s.image).name for s in train] == ["d0pa.jpg", "d1ap.jpg", "d3pa.jpg"]
    assert train[0].answer == "The lungs are clear 0. No pleural effusion. Heart size is normal."
    assert train[2].answer == "Mild cardiomegaly."  # no FINDINGS: falls back to IMPRESSION
    assert impressions[0].answer == "No acute cardiopulmonary process."
    assert len(val) == 1 and all(s.task == "report" and s.modality == "xray" for s in train)
    assert _images_exist(train)


def test_report_sections_ignore_an_addendum_above_the_report() -> None:
    report = (
        "ADDENDUM: FINDINGS: wrong part.\n ________________________\n"
        " FINAL REPORT\n FINDINGS:  Small left effusion.\n IMPRESSION:  Effusion."
    )
    assert report_target(report) == "Small left effusion."
    assert report_target(report, "findings+impression") == "Small left effusion. Effusion."


def test_r2gen_annotation(root: Path) -> None:
    base = rf.r2gen(root)
    test = read_r2gen(base, "test")
    assert len(test) == 6 and test[1].answer == "the heart size is normal . no effusion 1 ."
    assert _images_exist(test) and test[0].meta["id"] == "mimic_cxr/test0"


def test_radgenome_boxes_come_from_the_masks_and_match_the_image(root: Path) -> None:
    # Prepare: volumes with a bright block exactly where each region's mask is.
    base, expected = rf.radgenome(root)
    # Execute
    train = read_radgenome(base, "train", window=(0.0, 2000.0))
    # Assert: one sample per (volume, region) row; the whole-report row (no anatomy) is skipped.
    assert len(train) == 6
    for s in train:
        stem, region = s.meta["id"].split("/")[1:]
        z, box = expected[(stem, region)]
        assert isinstance(s.image, ImageRef) and s.image.index == z
        assert s.box == box and s.answer == "[" + ", ".join(f"{v:.2f}" for v in box) + "]"
        # The region's block, seen through the image path, spans exactly the box.
        img = read_image(s.image)[..., 0]
        level = img[
            int(round((box[1] + box[3]) / 2 * img.shape[0] - 0.5)),
            int((box[0] + box[2]) / 2 * img.shape[1]),
        ]
        rows, cols = np.nonzero(img == level)
        h, w = img.shape
        assert (
            cols.min() / w,
            rows.min() / h,
            (cols.max() + 1) / w,
            (rows.max() + 1) / h,
        ) == pytest.approx(box, abs=0.006)
    val = read_radgenome(base, "val", regions=["heart"])
    assert {s.meta["id"].split("/")[-1] for s in val} == {"heart"} and len(val) == 3


def test_radgenome_missing_mask_is_flagged_on_the_record(root: Path, tmp_path: Path) -> None:
    base, _ = rf.radgenome(tmp_path)
    (base / "dataset" / "train_region_mask" / "train_1_a_1" / "lung.nii.gz").unlink()
    samples = read_radgenome(base, "train")
    flagged = [s for s in samples if s.meta.get("problem")]
    assert len(flagged) == 1 and "lung.nii.gz" in flagged[0].meta["problem"]


def test_fed_vqa_sources(root: Path) -> None:
    # Prepare
    for build in (rf.aqua, rf.gqa, rf.vizwiz, rf.vqa_abstract, rf.cocoqa):
        build(root)
    # Execute
    aqua = read_aqua(root / "aqua", "train")
    gqa = read_gqa(root / "gqa", "testdev")
    vizwiz = read_vizwiz(root / "vizwiz", "val")
    abstract = read_vqa_abstract(root / "vqa_abstract", "val")
    coco = read_cocoqa(root / "cocoqa", "test")
    # Assert
    assert [s.answer for s in aqua[:3]] == ["people", "horse", "tree"]
    assert aqua[0].meta["external_knowledge"] is True and aqua[0].modality == "art"
    assert gqa[0].meta["id"] == "gqa/testdev00000" and gqa[0].image.endswith("t2370000.jpg")
    assert vizwiz[0].answer == "soup" and vizwiz[1].answer == "red"  # tie -> more "yes"
    assert abstract[0].image.endswith("abstract_v002_val2015_000000000020.png")
    assert (abstract[0].answer_type, abstract[1].answer, abstract[1].answer_type) == (
        "closed",
        "2",
        "open",
    )
    assert coco[0].image.endswith("val2014/COCO_val2014_000000000100.jpg")
    assert [s.meta["question_type"] for s in coco[:4]] == ["color", "number", "object", "location"]
    assert all(_images_exist(x) for x in (aqua, gqa, vizwiz, abstract, coco))


def test_llava_conversations(tmp_path: Path) -> None:
    # Prepare: a two-turn record, a text-only record, and xywh pixel boxes for detection.
    img = rf.image(tmp_path / "img" / "a.png", 1, size=20)
    rf._json(
        tmp_path / "data.json",
        [
            {
                "id": "r1",
                "image": "a.png",
                "answer_type": "CLOSED",
                "modality": "ct",
                "conversations": [
                    {"from": "human", "value": "<image>\nIs there a lesion?"},
                    {"from": "gpt", "value": "yes"},
                    {"from": "human", "value": "Where?"},
                    {"from": "gpt", "value": "left"},
                ],
            },
            {
                "id": "r2",
                "conversations": [
                    {"from": "human", "value": "Hi?"},
                    {"from": "gpt", "value": "ok"},
                ],
            },
        ],
    )
    rf._json(
        tmp_path / "det.json",
        [
            {
                "id": "d1",
                "image": "a.png",
                "task": "detection",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhere is the liver?"},
                    {"from": "gpt", "value": "The coordinates are [2, 4, 10, 6]"},
                ],
            }
        ],
    )
    # Execute
    samples = read_llava(tmp_path / "data.json", tmp_path / "img")
    det = read_llava(tmp_path / "det.json", tmp_path / "img", box_format="xywh")
    # Assert
    assert [(s.question, s.answer) for s in samples] == [
        ("Is there a lesion?", "yes"),
        ("Where?", "left"),
        ("Hi?", "ok"),
    ]
    assert samples[0].image == str(img) and samples[2].image is None
    assert samples[0].answer_type == "closed" and samples[0].modality == "ct"
    assert [s.meta["id"] for s in samples] == ["llava/r1", "llava/r1/1", "llava/r2"]
    assert det[0].task == "detection" and det[0].box == (0.1, 0.2, 0.6, 0.5)  # 20x20 image
    assert parse_box("box [0.1, 0.2, 0.3, 0.4]") == (0.1, 0.2, 0.3, 0.4)
    assert parse_box("no box here") is None


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda r: read_slake(r / "nowhere", "train"), "train.json"),
        (lambda r: read_vqa_rad(r / "nowhere", "train"), "VQA_RAD Dataset Public.json"),
        (lambda r: read_mimic_cxr(r / "nowhere", "train"), "mimic-cxr-2.0.0-split.csv.gz"),
        (lambda r: read_radgenome(r / "nowhere", "train"), "train_region_report.csv"),
        (lambda r: read_gqa(r / "nowhere", "train"), "train_balanced_questions.json"),
        (lambda r: read_cocoqa(r / "nowhere", "train"), "questions.txt"),
    ],
)
def test_missing_files_name_the_path_and_the_docs(tmp_path: Path, call, expected: str) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        call(tmp_path)
    message = str(info.value)
    assert expected in message and str(tmp_path / "nowhere") in message
    assert "docs/data.md" in message


def test_mimic_cxr_views_make_sites(root: Path) -> None:
    # Prepare: study 0 has PA, AP and LATERAL images; 1 AP and LATERAL; 2 LATERAL only.
    base = rf.mimic_cxr(root)
    # Execute
    ap = read_mimic_cxr(base, "train", views=["AP"])
    lateral = read_mimic_cxr(base, "train", views=["lateral"])
    ap_only = read_mimic_cxr(base, "train", views=["AP"], exclude_views=["PA"])
    lateral_only = read_mimic_cxr(base, "train", views=["LATERAL"], exclude_views=["PA", "AP"])
    # Assert: each site gets the studies that have its view, with that view's image
    assert [Path(s.image).name for s in ap] == ["d0ap.jpg", "d1ap.jpg", "d3ap.jpg"]
    assert [Path(s.image).name for s in ap_only] == ["d1ap.jpg"]  # study 1 has no PA image
    assert [Path(s.image).name for s in lateral_only] == ["d2lat.jpg"]
    assert [Path(s.image).name for s in lateral] == [
        "d0lat.jpg",
        "d1lat.jpg",
        "d2lat.jpg",
        "d3lat.jpg",
    ]
