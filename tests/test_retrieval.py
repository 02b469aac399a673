"""LightFED's case libraries: FAISS against brute force, privacy of the libraries, the prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedmllm.data.schema import ClientData, Sample
from fedmllm.retrieval import Case, CaseLibrary, RagTemplate, RetrievalAugmenter, hashed_text


def _library(n: int = 200, d: int = 24, seed: int = 0) -> tuple[CaseLibrary, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    cases = [Case(f"c/train/{i}", f"q{i}", f"a{i}") for i in range(n)]
    return CaseLibrary("c", vectors, cases), vectors


def test_faiss_search_equals_numpy_brute_force():
    lib, vectors = _library()
    queries = np.random.default_rng(1).standard_normal((30, vectors.shape[1])).astype(np.float32)
    scores, rows = lib.search(queries, k=5)
    dots = queries.astype(np.float64) @ vectors.T.astype(np.float64)  # independent reference
    expected = np.argsort(-dots, axis=1)[:, :5]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(dots, expected, axis=1), rtol=1e-5)


def test_leave_one_out_equals_brute_force_without_the_query():
    lib, vectors = _library(n=50)
    ids = [c.case_id for c in lib.cases]
    _, rows = lib.search(vectors, k=3, exclude=list(ids))
    dots = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    np.fill_diagonal(dots, -np.inf)
    np.testing.assert_array_equal(rows, np.argsort(-dots, axis=1)[:, :3])
    assert all(i not in row for i, row in enumerate(rows))


def test_small_library_pads_with_minus_one_and_k_below_one_refused():
    lib, vectors = _library(n=2)
    _, rows = lib.search(vectors[:1], k=4)
    assert sorted(rows[0, :2].tolist()) == [0, 1] and rows[0, 2:].tolist() == [-1, -1]
    with pytest.raises(ValueError, match="retrieval.k"):
        lib.search(vectors[:1], k=0)


def test_hashed_text_cosines():
    a, b, c = hashed_text(["is there a lesion?", "Is there a lesion", "left kidney cyst"], 4096)
    assert float(a @ b) == pytest.approx(1.0)  # case and punctuation do not matter
    assert float(a @ c) == pytest.approx(0.0)  # no word in common
    # "a b" vs "a c": features {a, b, "a b"} and {a, c, "a c"} share one of three: cos = 1/3
    x, y = hashed_text(["a b", "a c"], 4096)
    assert float(x @ y) == pytest.approx(1 / 3)


def test_prompt_template_by_hand():
    cases = [Case("x", "how many lesions?", "2"), Case("y", "which side?", "left")]
    t = RagTemplate()
    assert (
        t.question("is there a lesion?", cases)
        == "[how many lesions? : 2] [which side? : left] is there a lesion?"
    )
    assert t.question("is there a lesion?", []) == "is there a lesion?"
    wordy = RagTemplate("Q: {question} A: {answer}.", "Similar cases: {cases}\nNow: {question}")
    assert wordy.question("q?", cases[:1]) == "Similar cases: Q: how many lesions? A: 2.\nNow: q?"
    with pytest.raises(ValueError, match="case_template"):
        RagTemplate(case_template="{question}")


def _image(value: int) -> np.ndarray:
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    img[: value % 16, :, 0] = 200  # a bar whose height encodes the case
    img[:, : (value * 7) % 16, 1] = 120
    return img


def _client(cid: str, offset: int, n: int = 12) -> ClientData:
    train = [
        Sample(_image(offset + i), "ct", f"question {i}?", f"{cid}-{i}", "vqa", "open")
        for i in range(n)
    ]
    # each test sample is an exact copy of a training image of the same client
    test = [
        Sample(_image(offset + i), "ct", f"question {i}?", f"{cid}-{i}", "vqa", "open")
        for i in (0, 5)
    ]
    return ClientData(cid, "vqa", "ct", train, test)


def _retrieved(samples: list[Sample]) -> list[list[str]]:
    return [[r["case_id"] for r in s.meta["retrieved"]] for s in samples]


def test_each_client_searches_only_its_own_cases(tmp_path: Path):
    # Both clients hold the very same images: a shared index would return the other's cases.
    a, b = _client("a", 0), _client("b", 0)
    rag = RetrievalAugmenter(k=3, image_encoder="pixels", cache_dir=str(tmp_path))
    out, facts = rag.apply([a, b], engine=None)
    assert facts["libraries"] == {
        "a": {**facts["libraries"]["a"], "size": 12},
        "b": {**facts["libraries"]["b"], "size": 12},
    }
    for client in out:
        prefix = f"{client.client_id}/train/"
        for ids in _retrieved(client.train) + _retrieved(client.test):
            assert len(ids) == 3 and all(i.startswith(prefix) for i in ids)
        for i, ids in enumerate(_retrieved(client.train)):
            assert f"{prefix}{i}" not in ids  # leave-one-out in training prompts
        # the test copy of training case 5 finds it first (image and question identical)
        assert _retrieved(client.test)[1][0] == f"{prefix}5"
        assert client.test[1].question.startswith(f"[question 5? : {client.client_id}-5] ")
    # the libraries on disk hold only their owner's cases
    for cases_file in (tmp_path / "retrieval").glob("*/cases.json"):
        payload = json.loads(cases_file.read_text())
        assert {row[0].split("/")[0] for row in payload["cases"]} == {payload["owner"]}


def test_pooled_scope_crosses_clients_and_the_cache_is_reused(tmp_path: Path):
    a, b = _client("a", 0), _client("b", 0)
    pooled = RetrievalAugmenter(k=4, image_encoder="pixels", scope="auto", cache_dir=str(tmp_path))
    out, facts = pooled.apply([a, b], engine=None, pooled=True)
    assert facts["scope"] == "pooled" and facts["libraries"]["pooled"]["size"] == 24
    owners = {i.split("/")[0] for ids in _retrieved(out[0].test) for i in ids}
    assert owners == {"a", "b"}  # the twin image of the other client is found too
    again, facts2 = pooled.apply([a, b], engine=None, pooled=True)
    assert facts2["libraries"]["pooled"]["from_cache"] is True
    assert [s.question for s in again[0].train] == [s.question for s in out[0].train]


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="retrieval.scope"):
        RetrievalAugmenter(scope="global")
    with pytest.raises(ValueError, match="retrieval.image_encoder"):
        RetrievalAugmenter(image_encoder="clip")
    with pytest.raises(ValueError, match="both be none"):
        RetrievalAugmenter(image_encoder="none", text_encoder="none")
