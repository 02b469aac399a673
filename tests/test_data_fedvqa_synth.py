"""Tests of ``fedvqa_synth``: five visual styles, five question types, single-word answers."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fedmllm.data import synthetic
from fedmllm.data.synthmed import TOKEN_RE
from fedmllm.data.synthvqa import COLORS, load_fedvqa_synth

NUMBER = {"zero": 0, "one": 1, "two": 2, "three": 3}
SIZES = {"vqa": 120}


@pytest.fixture(scope="module")
def bench():
    return load_fedvqa_synth(None, seed=1, public_size=200, train_sizes=SIZES, test_size=20)


def _client(bench, cid):
    return next(c for c in bench.clients if c.client_id == cid)


def test_five_clients_one_style_each(bench) -> None:
    # Assert
    styles = {"aqua": "art", "gqa": "photo", "vizwiz": "blurry", "abstract": "cartoon"}
    styles["cocoqa"] = "object"
    assert [c.client_id for c in bench.clients] == list(styles)
    for c in bench.clients:
        assert c.task == "vqa" and c.modality == styles[c.client_id]
        assert {s.modality for s in (*c.train, *c.test)} == {styles[c.client_id]}
        assert (len(c.train), len(c.test)) == (120, 20)
    assert {s.modality for s in bench.public} == set(styles.values())
    assert {s.meta["qtype"] for s in bench.public} == {
        "yesno",
        "count",
        "color",
        "location",
        "object",
    }


def test_default_sizes_follow_table_6() -> None:
    # Prepare: Fed-MoLE Table 6 train sizes, divided by ten and rounded.
    table6 = {"aqua": 2518, "gqa": 2534, "vizwiz": 2493, "abstract": 2476, "cocoqa": 2487}
    # Execute
    bench = load_fedvqa_synth(None, public_size=0, test_size=0, train_sizes={"gqa": 3})
    # Assert
    sizes = {c.client_id: len(c.train) for c in bench.clients}
    assert sizes == {k: (3 if k == "gqa" else round(v / 10)) for k, v in table6.items()}


def test_every_answer_is_true_of_its_scene(bench) -> None:
    # Execute / Assert: recompute each answer from the scene record.
    checked = Counter()
    for s in bench.all_samples():
        scene, q = s.meta["scene"], s.question
        words = set(TOKEN_RE.findall(q))
        half_size = scene.image_size / 2
        things = scene.things
        if s.meta["qtype"] == "count":
            named = [t for t in things if t.category + "s" in words or t.category + "es" in words]
            assert NUMBER[s.answer] == len(named) or s.answer == "zero"
        elif s.meta["qtype"] == "color":
            (t,) = [t for t in things if t.category in words]
            assert s.answer == t.color
        elif s.meta["qtype"] == "object":
            (t,) = [t for t in things if t.color in words]
            assert s.answer == t.category
        elif s.meta["qtype"] == "location":
            (t,) = [t for t in things if t.category in words]
            if s.answer in ("left", "right"):
                assert (s.answer == "left") == (t.center[0] < half_size)
            else:
                assert (s.answer == "top") == (t.center[1] < half_size)
        else:
            colour = [c for c in COLORS if c in words]
            hits = [t for t in things if t.category in words and (not colour or t.color in colour)]
            assert (s.answer == "yes") == bool(hits)
        checked[s.meta["qtype"]] += 1
    assert min(checked.values()) > 50


def test_objects_do_not_overlap_and_keep_off_the_midlines(bench) -> None:
    for s in bench.all_samples():
        things, size = s.meta["scene"].things, s.meta["scene"].image_size
        for i, a in enumerate(things):
            assert abs(a.center[0] - size / 2) >= 1.0 and abs(a.center[1] - size / 2) >= 1.0
            assert a.size <= a.center[0] <= size - a.size
            for b in things[i + 1 :]:
                assert math.dist(a.center, b.center) >= a.size + b.size


def _chroma(pixels: np.ndarray) -> np.ndarray:
    rgb = pixels.astype(float) + 1.0
    return rgb / rgb.sum(axis=-1, keepdims=True)


def test_object_colours_can_be_read_from_the_pixels(bench) -> None:
    # Prepare: nominal chroma of each colour name.
    names = list(COLORS)
    refs = _chroma(np.array([COLORS[n] for n in names]))
    hits: dict[str, list[bool]] = {}
    # Execute: nearest nominal chroma to the most saturated pixels near each object's centre.
    for s in bench.all_samples():
        scene = s.meta["scene"]
        y, x = np.mgrid[0 : scene.image_size, 0 : scene.image_size] + 0.5
        for t in scene.things:
            near = np.hypot(x - t.center[0], y - t.center[1]) <= 0.45 * t.size
            px = s.image[near]
            sat = px.max(axis=1).astype(int) - px.min(axis=1)
            chosen = _chroma(px[np.argsort(-sat)[: max(1, len(px) // 3)]].mean(0, keepdims=True))
            guess = names[int(np.argmin(((refs - chosen) ** 2).sum(1)))]
            hits.setdefault(scene.style, []).append(guess == t.color)
    # Assert: colour questions are answerable from the image in every style.
    for style, ok in hits.items():
        assert np.mean(ok) > (0.75 if style == "blurry" else 0.9), style


def _features(image: np.ndarray) -> np.ndarray:
    g = image.astype(float) / 255.0
    lum = g.mean(-1)
    # Sharpness that noise does not fake: the strongest edges of a 2x2-averaged image.
    smooth = (lum[:-1, :-1] + lum[1:, :-1] + lum[:-1, 1:] + lum[1:, 1:]) / 4
    edges = np.abs(np.diff(smooth, axis=1))
    return np.array(
        [
            np.percentile(edges, 98),
            *g.reshape(-1, 3).mean(0),
            lum.std(),
            np.abs(np.diff(lum, axis=0)).mean(),
            np.abs(np.diff(lum, axis=1)).mean(),
            (lum < 0.08).mean(),
            lum[:8].mean() - lum[-8:].mean(),
            (g.max(-1) - g.min(-1)).mean(),
        ]
    )


def test_visual_styles_are_distinguishable(bench) -> None:
    # Prepare: nearest-centroid classifier on simple image statistics, half for fitting.
    samples = [s for c in bench.clients for s in c.train]
    feats = np.stack([_features(s.image) for s in samples])
    labels = np.array([s.modality for s in samples])
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    fit = np.arange(len(samples)) % 2 == 0
    names = sorted(set(labels))
    centroids = np.stack([feats[fit & (labels == m)].mean(0) for m in names])
    # Execute
    dist = ((feats[~fit][:, None, :] - centroids[None]) ** 2).sum(-1)
    # Assert
    assert (np.array(names)[dist.argmin(1)] == labels[~fit]).mean() > 0.9


def _dist(samples) -> Counter:
    return Counter(s.answer for s in samples)


def test_answers_overlap_but_are_distributed_differently(bench) -> None:
    # Prepare
    dists = {c.client_id: _dist(c.train) for c in bench.clients}
    # Execute: total variation distance between clients' answer distributions.
    tv = []
    ids = list(dists)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            na, nb = sum(dists[a].values()), sum(dists[b].values())
            keys = set(dists[a]) | set(dists[b])
            tv.append(0.5 * sum(abs(dists[a][k] / na - dists[b][k] / nb) for k in keys))
            assert len(set(dists[a]) & set(dists[b])) >= 8  # overlapping answer sets
    # Assert
    assert min(tv) > 0.15
    closed = [s for c in bench.clients for s in c.train if s.answer_type == "closed"]
    assert 0.35 < np.mean([s.answer == "yes" for s in closed]) < 0.65
    assert not any(s.meta["qtype"] == "yesno" for s in _client(bench, "cocoqa").train)
    assert all(len(s.answer.split()) == 1 for s in bench.all_samples())
    aqua = _client(bench, "aqua").train
    assert all(s.question == s.question.lower() and "?" not in s.question for s in aqua)


def test_every_text_is_in_the_vocabulary(bench) -> None:
    vocab = set(bench.vocabulary())
    texts = [t for s in bench.all_samples() for t in (s.question, s.answer)]
    assert all("".join(TOKEN_RE.findall(t)) == "".join(t.split()) for t in texts)
    assert not any(re.search(r"\ba [aeiou]", t) for t in texts)  # "an umbrella"
    assert {tok for t in texts for tok in TOKEN_RE.findall(t)} <= vocab


def test_public_is_disjoint_and_milder(bench) -> None:
    client = [s for c in bench.clients for s in (*c.train, *c.test)]
    digest = {hashlib.sha1(s.image.tobytes()).hexdigest() for s in bench.public}
    assert not digest & {hashlib.sha1(s.image.tobytes()).hexdigest() for s in client}
    assert max(s.meta["scene"].strength for s in bench.public) <= 0.5
    assert min(s.meta["scene"].strength for s in client) >= 0.6
    public_q = {s.question for s in bench.public}
    assert not public_q & {s.question for s in client}


def test_cache_round_trip_and_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    small = {"public_size": 10, "train_sizes": {"vqa": 6}, "test_size": 3}
    fresh = load_fedvqa_synth(tmp_path, seed=3, **small)
    other = load_fedvqa_synth(None, seed=4, **small)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(synthetic, "generate", fail)  # every generated benchmark's builder
    # Execute
    cached = load_fedvqa_synth(tmp_path, seed=3, **small)
    # Assert
    a, b, c = fresh.all_samples(), cached.all_samples(), other.all_samples()
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert [(s.question, s.answer, s.meta) for s in a] == [
        (s.question, s.answer, s.meta) for s in b
    ]
    assert sum(np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=True)) == 0


def test_iid_partition_of_one_source() -> None:
    # Execute: the paper's Table 8 setting, AQUA split five ways.
    bench = load_fedvqa_synth(
        None,
        public_size=0,
        train_sizes={"vqa": 20},
        test_size=10,
        partition={"scheme": "iid", "num_clients": 5, "sources": ["aqua"]},
    )
    # Assert
    assert [c.client_id for c in bench.clients] == [f"aqua_{i}" for i in range(5)]
    assert [len(c.train) for c in bench.clients] == [4] * 5
    assert [len(c.test) for c in bench.clients] == [2] * 5
    assert {s.modality for c in bench.clients for s in c.train} == {"art"}
