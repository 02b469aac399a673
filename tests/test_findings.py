"""The findings extractor and the clinical-efficacy metric of mrg_synth.

Expected findings are written by hand from what each report says; the scene check compares
the extractor with the scene records the reports were written from (an independent source:
the generator's record, not the extractor's reading).
"""

from __future__ import annotations

import pytest

from fedmllm.data.synthmed.mrg import load_mrg_synth
from fedmllm.data.synthmed.mrg_styles import SITE_NAMES, site_lexicon
from fedmllm.data.synthmed.phrases import image_half, patient_side
from fedmllm.metrics import task_metrics
from fedmllm.metrics.findings import extract_findings

LEX = site_lexicon()

# (report as a site writes it, expected (kind, side, half) multiset, expected count)
HAND_WRITTEN = [
    # site a (structured)
    (
        "findings: frontal chest radiograph. two focal lesions: moderate mass, right upper zone; "
        "small cyst, left lower zone. impression: abnormal study.",
        [("tumor", "right", "upper"), ("cyst", "left", "lower")],
        2,
    ),
    (
        "findings: frontal chest radiograph. no focal lesion. the lungs are clear. "
        "impression: no acute disease.",
        [],
        0,
    ),
    # site b (narrative, impression first, British spelling, "and" between findings)
    (
        "conclusion: abnormal chest. findings: two abnormalities noted. a large tumour in the left "
        "lower zone and a small calcific focus in the right upper zone.",
        [("tumor", "left", "lower"), ("calcification", "right", "upper")],
        2,
    ),
    (
        "conclusion: normal chest. findings: the lungs are clear, without any focal lesion.",
        [],
        0,
    ),
    # site c (abbreviations, digits)
    (
        "cxr: 3 les: lt up calc sm; rt low cyst med; rt up mass lg. imp: abnormal.",
        [
            ("calcification", "left", "upper"),
            ("cyst", "right", "lower"),
            ("tumor", "right", "upper"),
        ],
        3,
    ),
    ("cxr: nad. no lesion. imp: normal.", [], 0),
    # site d (grouped by lung: the side comes from the header)
    (
        "technique: pa view. observations: two opacities seen. right lung: small nodule in the "
        "upper zone; small bulla in the lower zone. opinion: abnormal.",
        [("tumor", "right", "upper"), ("cyst", "right", "lower")],
        2,
    ),
    (
        "technique: pa view. observations: both lungs clear without nodule, mass or "
        "calcification. opinion: no abnormality.",
        [],
        0,
    ),
    # site e (lobes, "negative for")
    (
        "summary: abnormal. chest x ray. one lesion: calcified focus of small size, "
        "left lower lobe.",
        [("calcification", "left", "lower")],
        1,
    ),
    ("summary: normal. chest x ray. negative for lesion.", [], 0),
    # negation inside a positive report: the negated kind is not a finding
    (
        "findings: frontal chest radiograph. one focal lesion: large mass, left upper zone. "
        "no calcification. without cyst.",
        [("tumor", "left", "upper")],
        1,
    ),
    ("no lesion.", [], 0),
]


@pytest.mark.parametrize(("text", "expected", "count"), HAND_WRITTEN)
def test_extractor_reads_hand_written_reports_of_every_site(text, expected, count):
    found = extract_findings(text, LEX)
    assert sorted((f.kind, f.side, f.half) for f in found.findings) == sorted(expected)
    assert found.count == count


def test_extractor_recovers_the_scene_record_of_every_generated_report():
    bench = load_mrg_synth(
        cache_dir=None,
        public_size=0,
        train_sizes={"report": 60},
        test_size=20,
        sites=SITE_NAMES[:5],
    )
    checked = 0
    for client in bench.clients:
        for s in client.train + client.test:
            scene, size = s.meta["scene"], s.meta["scene"].image_size
            want = sorted(
                (les.kind, les.size, patient_side(les, size), image_half(les, size))
                for les in scene.lesions
            )
            found = extract_findings(s.answer, LEX)
            assert sorted((f.kind, f.size, f.side, f.half) for f in found.findings) == want, (
                s.answer
            )
            assert found.count == len(scene.lesions)
            checked += 1
    assert checked == 5 * 80


def test_sites_write_differently_and_see_different_scanners():
    bench = load_mrg_synth(
        cache_dir=None,
        public_size=0,
        train_sizes={"report": 40},
        test_size=1,
        sites=["a", "c", "d"],
    )
    heads = {c.client_id: {s.answer.split(":")[0] for s in c.train} for c in bench.clients}
    assert heads["a"] == {"findings"} and heads["c"] == {"cxr"} and heads["d"] == {"technique"}
    style = {c.client_id: [s.meta["scene"].style for s in c.train] for c in bench.clients}
    assert style["d"].count(3) > 20 and style["a"].count(0) > 20  # each site's own scanner
    with pytest.raises(ValueError, match="3 to 5"):
        load_mrg_synth(cache_dir=None, public_size=0, sites=["a", "b"])


def test_clinical_metric_by_hand():
    ref = "cxr: 2 les: lt up cyst sm; rt low calc sm. imp: abnormal."
    pred = (
        "findings: frontal chest radiograph. two focal lesions: small cyst, left upper zone; "
        "large mass, right lower zone. impression: abnormal study."
    )
    normal = "summary: normal. chest x ray. negative for lesion."
    m = task_metrics("report", ["rouge", "clinical"])
    m.update([pred, normal], [ref, normal])
    out = {k: float(v) for k, v in m.compute().items()}
    # tuples: tp 1 (left upper cyst), fp 1 (mass), fn 1 (calcification); the normal pair adds 0
    assert out["ce_f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert out["ce_kind_f1"] == pytest.approx(0.5)  # kinds: {cyst, tumor} vs {cyst, calc}
    assert out["ce_count_acc"] == pytest.approx(1.0)  # 2 = 2 and 0 = 0
