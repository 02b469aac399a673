"""Tests of ``crossmodal_synth``: one imaging modality per client."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from fedmllm.data import synthetic
from fedmllm.data.synthmed import TOKEN_RE, load_fedmed_synth, vocabulary
from fedmllm.data.synthmed.crossmodal import load_crossmodal_synth

SMALL = {"public_size": 40, "train_sizes": {"vqa": 40}, "test_size": 10}
NUMBER = {"zero": 0, "one": 1, "two": 2, "three": 3}


@pytest.fixture(scope="module")
def bench():
    return load_crossmodal_synth(None, seed=2, **SMALL)


def test_each_client_holds_exactly_one_modality(bench) -> None:
    # Assert
    assert [c.client_id for c in bench.clients] == ["ct", "mri", "xray", "us"]
    for c in bench.clients:
        assert c.task == "vqa"
        assert c.modality == c.client_id
        assert {s.modality for s in (*c.train, *c.test)} == {c.client_id}
        assert {s.meta["scene"].modality for s in c.train} == {c.client_id}
        assert all(s.task == "vqa" and s.answer_type in ("closed", "open") for s in c.train)
        assert (len(c.train), len(c.test)) == (40, 10)
    assert {s.modality for s in bench.public} == {"ct", "mri", "xray", "us"}


def test_answers_are_read_off_the_scene(bench) -> None:
    # Prepare: recompute count and presence answers from the scene records.
    samples = [s for c in bench.clients for s in c.train]
    counts = [s for s in samples if s.meta["qtype"] == "count"]
    presence = [s for s in samples if s.meta["qtype"] == "presence"]
    # Assert
    assert counts and presence
    assert all(NUMBER[s.answer] == len(s.meta["scene"].lesions) for s in counts)
    assert all((s.answer == "yes") == bool(s.meta["scene"].lesions) for s in presence)


def test_public_split_is_fedmed_synths_and_disjoint_from_clients(bench) -> None:
    # Prepare
    fed = load_fedmed_synth(
        None, seed=2, public_size=40, train_sizes={"vqa": 0, "report": 0, "detection": 0}
    )
    client = [s for c in bench.clients for s in (*c.train, *c.test)]
    # Execute
    digest = [hashlib.sha1(s.image.tobytes()).hexdigest() for s in bench.public]
    # Assert: same pretraining data -> the same cached tiny model serves both benchmarks.
    assert digest == [hashlib.sha1(s.image.tobytes()).hexdigest() for s in fed.public]
    assert [s.question for s in bench.public] == [s.question for s in fed.public]
    client_digest = {hashlib.sha1(s.image.tobytes()).hexdigest() for s in client}
    assert not set(digest) & client_digest
    ids = [s.meta["scene"].scene_id for s in client]
    assert len(set(ids)) == len(ids)


def test_sizes_by_task_or_client_and_subsets_keep_data() -> None:
    # Execute
    sub = load_crossmodal_synth(
        None,
        seed=2,
        public_size=0,
        train_sizes={"vqa": 40, "us": 5, "report": 7},  # report: no such client, ignored
        test_size=10,
        modalities=["us", "mri"],
    )
    full = load_crossmodal_synth(None, seed=2, **SMALL)
    # Assert
    assert [(c.client_id, len(c.train)) for c in sub.clients] == [("us", 5), ("mri", 40)]
    by_id = {c.client_id: c for c in full.clients}
    for c in sub.clients:  # a client's data does not depend on which others exist
        pairs = zip(c.train, by_id[c.client_id].train, strict=False)
        assert all(np.array_equal(a.image, b.image) and a.answer == b.answer for a, b in pairs)
    with pytest.raises(ValueError, match="unknown key"):
        load_crossmodal_synth(None, train_sizes={"pet": 3})
    with pytest.raises(ValueError, match="unknown modality"):
        load_crossmodal_synth(None, modalities=["ct", "pet"])


def test_every_text_is_in_the_vocabulary(bench) -> None:
    # Prepare
    vocab = set(bench.vocabulary())
    texts = [t for s in bench.all_samples() for t in (s.question, s.answer)]
    # Assert
    assert vocab == set(vocabulary())
    assert {tok for t in texts for tok in TOKEN_RE.findall(t)} <= vocab


def test_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    fresh = load_crossmodal_synth(tmp_path, seed=1, **SMALL)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(synthetic, "generate", fail)  # every generated benchmark's builder
    # Execute
    cached = load_crossmodal_synth(tmp_path, seed=1, **SMALL)
    # Assert
    a, b = fresh.all_samples(), cached.all_samples()
    assert len(a) == len(b) == 40 + 4 * 50
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert [(s.question, s.answer, s.modality, s.meta) for s in a] == [
        (s.question, s.answer, s.modality, s.meta) for s in b
    ]
    assert [c.modality for c in cached.clients] == ["ct", "mri", "xray", "us"]
