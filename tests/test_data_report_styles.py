"""The per-client report-writing style switch on ``fedmed_synth``."""

from __future__ import annotations

from fedmllm.data.synthmed import TOKEN_RE, load_fedmed_synth
from fedmllm.data.synthmed.phrases import patient_side
from fedmllm.data.synthmed.report_styles import styled_report

SIZES = {"vqa": 4, "report": 30, "detection": 4}


def test_report_clients_write_in_their_own_style() -> None:
    # Execute: the report source split over three hospitals with three styles.
    bench = load_fedmed_synth(
        None,
        public_size=0,
        train_sizes=SIZES,
        test_size=6,
        partition={
            "scheme": "iid",
            "sources": ["report"],
            "num_clients": 3,
            "report_styles": ["structured", "narrative", "terse"],
        },
    )
    # Assert
    assert [c.client_id for c in bench.clients] == ["report_0", "report_1", "report_2"]
    structured, narrative, terse = (c.train for c in bench.clients)
    assert all(s.answer.startswith("findings:") for s in structured)
    assert all(s.answer.startswith("the frontal chest radiograph") for s in narrative)
    assert all(s.meta["report_style"] == "terse" for s in terse)
    for s in terse:  # the terse style abbreviates the patient's side of every lesion
        scene = s.meta["scene"]
        sides = [{"left": "lt", "right": "rt"}[patient_side(les, 32)] for les in scene.lesions]
        assert all(f" {side} " in s.answer for side in sides)
        assert s.answer == ("no lesion. normal." if not scene.lesions else s.answer)
    # Vocabulary grows by the styles' words, so the tiny model can write them.
    vocab = set(bench.vocabulary())
    texts = [s.answer for c in bench.clients for s in (*c.train, *c.test)]
    assert {t for text in texts for t in TOKEN_RE.findall(text)} <= vocab
    assert {"lt", "rt", "overall"} <= vocab


def test_default_vocabulary_is_unchanged_without_styles() -> None:
    plain = load_fedmed_synth(None, public_size=0, train_sizes=SIZES, test_size=2)
    assert "overall" not in plain.vocabulary() and "lt" not in plain.vocabulary()


def test_styles_differ_for_the_same_scene() -> None:
    bench = load_fedmed_synth(None, public_size=0, train_sizes=SIZES, test_size=2)
    scene = bench.clients[1].train[0].meta["scene"]
    texts = {style: styled_report(scene, style) for style in ("structured", "narrative", "terse")}
    assert len(set(texts.values())) == 3
    assert texts["structured"] == bench.clients[1].train[0].answer
