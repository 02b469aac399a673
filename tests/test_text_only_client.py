"""The text-only hospital of crossmodal_text_synth: no images, answers readable from the text."""

from __future__ import annotations

import pytest

from fedmllm.data.synthmed import tokenize, vocabulary
from fedmllm.data.synthmed.phrases import NUMBER_WORDS
from fedmllm.data.synthmed.text_only import TEXT, load_crossmodal_text_synth, text_client


@pytest.fixture(scope="module")
def client():
    return text_client(seed=0, train_size=120, test_size=20)


def test_text_client_has_no_images_and_stays_in_the_vocabulary(client):
    samples = client.train + client.test
    assert client.client_id == client.modality == TEXT and client.task == "vqa"
    assert all(s.image is None and s.modality == TEXT for s in samples)
    words = set(vocabulary())
    assert {w for s in samples for w in tokenize(f"{s.question} {s.answer}")} <= words
    assert len({s.question for s in samples}) > 0.9 * len(samples)  # not one repeated text


def test_answers_can_be_read_off_the_findings(client):
    checked = 0
    for s in client.train:
        findings = s.question.split(". ")[0] + ". " + s.question.split(". ")[1]
        qtype = s.meta["qtype"]
        if qtype == "presence":
            assert (s.answer == "no") == ("it shows no lesion" in s.question)
        elif qtype == "count":
            expected = (
                "zero" if "no lesion" in findings else findings.split("it shows ")[1].split()[0]
            )
            assert s.answer == expected and s.answer in NUMBER_WORDS
        elif qtype == "organ":
            assert f"image of the {s.answer}." in s.question
        elif qtype == "kind":  # the findings list the largest lesion first
            assert findings.split(": a ")[1].split()[1] == s.answer
        else:
            continue
        checked += 1
    assert checked >= 30


def test_loader_adds_the_text_client_to_the_image_clients(tmp_path):
    bench = load_crossmodal_text_synth(
        tmp_path,
        seed=0,
        public_size=4,
        train_sizes={"vqa": 3, "text": 5},
        test_size=2,
        modalities=["ct", "text"],
    )
    assert bench.name == "crossmodal_text_synth"
    assert [(c.client_id, len(c.train)) for c in bench.clients] == [("ct", 3), ("text", 5)]
    assert all(s.image is not None for s in bench.clients[0].train)
    with pytest.raises(ValueError, match="no imaging modality"):
        load_crossmodal_text_synth(tmp_path, modalities=["text"])
