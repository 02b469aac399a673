"""Tests of the embedded synthetic benchmark ``fedmed_synth``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedmllm.configs import CONFIG_DIR
from fedmllm.data import synthetic
from fedmllm.data.schema import Sample
from fedmllm.data.synthmed import (
    TOKEN_RE,
    SynthBenchmark,
    box_from_text,
    load_fedmed_synth,
    vocabulary,
)
from fedmllm.data.synthmed.report import report_text

SMALL = {
    "public_size": 120,
    "train_sizes": {"vqa": 30, "report": 30, "detection": 30},
    "test_size": 10,
}
CONFIG = CONFIG_DIR / "benchmark" / "fedmed_synth.yaml"


def _all(bench: SynthBenchmark) -> list[Sample]:
    return bench.public + [s for c in bench.clients for s in (*c.train, *c.test)]


def _assert_same(a: SynthBenchmark, b: SynthBenchmark) -> None:
    """Sample-by-sample equality (dataclass ``==`` cannot compare image arrays)."""
    assert [c.client_id for c in a.clients] == [c.client_id for c in b.clients]
    sa, sb = _all(a), _all(b)
    assert len(sa) == len(sb)
    for x, y in zip(sa, sb, strict=True):
        assert np.array_equal(x.image, y.image)
        fx = {f.name: getattr(x, f.name) for f in dataclasses.fields(x) if f.name != "image"}
        fy = {f.name: getattr(y, f.name) for f in dataclasses.fields(y) if f.name != "image"}
        assert fx == fy


@pytest.fixture(scope="module")
def bench() -> SynthBenchmark:
    """A mid-sized benchmark for the statistical tests (about a second to build)."""
    return load_fedmed_synth(
        None,
        seed=3,
        public_size=600,
        train_sizes={"vqa": 120, "report": 60, "detection": 60},
        test_size=20,
    )


def test_same_seed_is_identical_and_other_seed_differs() -> None:
    # Prepare / Execute
    a = load_fedmed_synth(None, seed=1, **SMALL)
    b = load_fedmed_synth(None, seed=1, **SMALL)
    c = load_fedmed_synth(None, seed=2, **SMALL)
    # Assert
    _assert_same(a, b)
    pairs = zip(_all(a), _all(c), strict=True)
    same_images = sum(np.array_equal(x.image, y.image) for x, y in pairs)
    assert same_images == 0
    assert [s.answer for s in _all(a)] != [s.answer for s in _all(c)]


def test_split_sizes_do_not_shift_other_splits() -> None:
    # Prepare / Execute: a bigger public split must leave the client samples untouched.
    a = load_fedmed_synth(None, seed=1, **SMALL)
    b = load_fedmed_synth(None, seed=1, **{**SMALL, "public_size": 7})
    # Assert
    for ca, cb in zip(a.clients, b.clients, strict=True):
        pairs = zip(ca.train, cb.train, strict=True)
        assert all(np.array_equal(x.image, y.image) for x, y in pairs)
    assert len(b.public) == 7


def test_clients_follow_fed_med_layout(bench: SynthBenchmark) -> None:
    # Execute
    by_id = {c.client_id: c for c in bench.clients}
    # Assert
    assert list(by_id) == ["vqa", "report", "detection"]
    assert all(c.task == c.client_id for c in bench.clients)
    assert (len(by_id["vqa"].train), len(by_id["report"].train), len(by_id["vqa"].test)) == (
        120,
        60,
        20,
    )
    assert {s.modality for s in by_id["vqa"].train} == {"ct", "mri"}
    assert {s.modality for s in by_id["report"].train} == {"xray"}
    assert {s.modality for s in by_id["detection"].train} == {"ct"}
    assert all(s.meta["scene"].lesions for s in by_id["detection"].train)
    assert {(s.task, s.modality) for s in bench.public} >= {
        (t, m) for t in ("vqa", "report", "detection") for m in ("ct", "mri", "xray", "us")
    }


def test_cache_round_trip_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    fresh = load_fedmed_synth(tmp_path, seed=4, **SMALL)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(synthetic, "generate", fail)  # every generated benchmark's builder
    # Execute
    cached = load_fedmed_synth(tmp_path, seed=4, **SMALL)
    # Assert
    _assert_same(fresh, cached)
    assert len(list((tmp_path / "fedmed_synth").iterdir())) == 1


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _truncate_and_rehash(path: Path) -> None:
    """Damage the array but keep the manifest consistent: only np.load can notice."""
    _truncate(path)
    manifest = path.parent / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(data))


def _wrong_checksum(path: Path) -> None:
    manifest = path.parent / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"][path.name] = "0" * 64
    manifest.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("images.npy", _truncate),
        ("images.npy", _truncate_and_rehash),
        ("samples.json", lambda p: p.write_text("{not json")),
        ("samples.json", _wrong_checksum),
        ("manifest.json", lambda p: p.write_text("garbage")),
        ("samples.json", lambda p: p.unlink()),
    ],
)
def test_corrupted_cache_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, damage
) -> None:
    # Prepare
    fresh = load_fedmed_synth(tmp_path, seed=5, **SMALL)
    (cache_dir,) = (tmp_path / "fedmed_synth").iterdir()
    damage(cache_dir / name)
    # Execute
    with caplog.at_level(logging.WARNING):
        rebuilt = load_fedmed_synth(tmp_path, seed=5, **SMALL)
    # Assert
    _assert_same(fresh, rebuilt)
    assert any(name in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    again = load_fedmed_synth(tmp_path, seed=5, **SMALL)  # the rebuilt cache is valid again
    _assert_same(fresh, again)


def test_lesions_stand_out_from_surrounding_tissue(bench: SynthBenchmark) -> None:
    # Prepare
    contrast: dict[str, list[float]] = {"cyst": [], "tumor": [], "calcification": []}
    # Execute: mean inside the lesion minus mean of a tissue ring around it.
    for s in _all(bench):
        scene = s.meta["scene"]
        y, x = np.mgrid[0 : scene.image_size, 0 : scene.image_size] + 0.5
        tissue = scene.body.inside(x, y, scene.body.rim)
        img = s.image[..., 0].astype(float)
        for i, les in enumerate(scene.lesions):
            dist = np.hypot(x - les.center[0], y - les.center[1])
            edge = les.radius * (1.2 if les.kind == "tumor" else 1.0)  # tumour outlines wobble
            ring = (dist > edge + 0.5) & (dist <= edge + 2.0) & tissue
            for j, other in enumerate(scene.lesions):
                if j != i:  # keep neighbours (and their blur) out of the ring
                    gap = np.hypot(x - other.center[0], y - other.center[1])
                    ring &= gap > other.radius * 1.2 + 1
            if ring.sum() >= 4:
                contrast[les.kind].append(img[dist <= 0.6 * les.radius].mean() - img[ring].mean())
    # Assert
    assert all(len(v) > 30 for v in contrast.values())
    assert max(contrast["cyst"]) < -15
    assert min(contrast["tumor"]) > 15
    assert min(contrast["calcification"]) > 15
    assert np.median(contrast["calcification"]) > np.median(contrast["tumor"])


def _features(image: np.ndarray) -> np.ndarray:
    g = image[..., 0].astype(float) / 255.0
    return np.array(
        [
            g.mean(),
            g.std(),
            (g < 0.03).mean(),
            (g == 0).mean(),
            g[:4].mean(),
            g[-4:].mean(),
            g[:, :4].mean(),
            np.abs(np.diff(g, axis=1)).mean(),
            np.abs(np.diff(g, axis=0)).mean(),
        ]
    )


def test_modalities_are_distinguishable(bench: SynthBenchmark) -> None:
    # Prepare: nearest-centroid classifier on simple image statistics, half for fitting.
    samples = bench.public
    feats = np.stack([_features(s.image) for s in samples])
    labels = np.array([s.modality for s in samples])
    mu, sd = feats.mean(0), feats.std(0) + 1e-9
    feats = (feats - mu) / sd
    fit, held = np.arange(len(samples)) % 2 == 0, np.arange(len(samples)) % 2 == 1
    names = sorted(set(labels))
    centroids = np.stack([feats[fit & (labels == m)].mean(0) for m in names])
    # Execute
    dist = ((feats[held][:, None, :] - centroids[None]) ** 2).sum(-1)
    predicted = np.array(names)[dist.argmin(1)]
    # Assert
    assert names == ["ct", "mri", "us", "xray"]
    assert (predicted == labels[held]).mean() > 0.9


def test_detection_answers_parse_back_to_the_box(bench: SynthBenchmark) -> None:
    # Prepare
    detection = [s for s in _all(bench) if s.task == "detection"]
    # Execute / Assert
    assert len(detection) > 100
    for s in detection:
        parsed = box_from_text(s.answer)
        assert parsed == s.box
        assert s.answer == "[" + ", ".join(f"{v:.2f}" for v in s.box) + "]"
        largest = s.meta["scene"].lesions[0]
        assert largest.radius == max(les.radius for les in s.meta["scene"].lesions)
        assert np.allclose(s.box, largest.box, atol=0.005 + 1e-9)


def test_every_text_tokenises_into_the_vocabulary(bench: SynthBenchmark) -> None:
    # Prepare
    vocab = set(vocabulary())
    # Execute
    texts = [t for s in _all(bench) for t in (s.question, s.answer)]
    tokens = {tok for t in texts for tok in TOKEN_RE.findall(t)}
    # Assert: the regex covers every character, everything is lower case and known.
    assert all("".join(TOKEN_RE.findall(t)) == "".join(t.split()) for t in texts)
    assert all(t == t.lower() for t in texts)
    assert tokens <= vocab
    assert {str(d) for d in range(10)} | {".", ",", "[", "]", "?"} <= vocab
    assert vocabulary() == sorted(vocab)


def test_public_and_client_scenes_are_disjoint(bench: SynthBenchmark) -> None:
    # Prepare
    client = [s for c in bench.clients for s in (*c.train, *c.test)]
    # Execute
    public_ids = {s.meta["scene"].scene_id for s in bench.public}
    client_ids = {s.meta["scene"].scene_id for s in client}
    public_hashes = {hashlib.sha1(s.image.tobytes()).hexdigest() for s in bench.public}
    client_hashes = {hashlib.sha1(s.image.tobytes()).hexdigest() for s in client}
    # Assert
    assert len(public_ids) == len(bench.public) and len(client_ids) == len(client)
    assert not public_ids & client_ids
    assert not public_hashes & client_hashes


def test_vqa_answers_are_balanced_and_follow_each_phrasing(bench: SynthBenchmark) -> None:
    # Prepare
    vqa = [s for s in _all(bench) if s.task == "vqa"]
    closed = [s for s in vqa if s.answer_type == "closed"]
    # Execute
    yes = np.mean([s.answer == "yes" for s in closed])
    side = [s for s in vqa if s.meta["qtype"] == "side"]
    # Assert
    assert {s.answer for s in closed} == {"yes", "no"}
    assert 0.35 < yes < 0.65
    open_answers = [s.answer for s in vqa if s.answer_type == "open"]
    assert len(open_answers) + len(closed) == len(vqa)
    assert all(len(a.split()) == 1 and a not in ("yes", "no") for a in open_answers)
    for s in side:  # public: side on the image; client: the patient's side (mirrored)
        on_left = s.meta["scene"].lesions[0].center[0] < s.meta["scene"].image_size / 2
        expected = (
            ("right" if on_left else "left")
            if s.meta["phrasing"] == "client"
            else ("left" if on_left else "right")
        )
        assert s.answer == expected
    public_q = {s.question for s in vqa if s.meta["phrasing"] == "public"}
    client_q = {s.question for s in vqa if s.meta["phrasing"] == "client"}
    assert not public_q & client_q


def test_reports_are_deterministic_and_sized(bench: SynthBenchmark) -> None:
    # Prepare
    reports = [s for s in bench.clients[1].train]
    # Execute
    lengths = [len([t for t in TOKEN_RE.findall(s.answer) if t.isalpha()]) for s in reports]
    # Assert
    assert all(s.answer == report_text(s.meta["scene"], "client") for s in reports)
    assert min(lengths) >= 12 and max(lengths) <= 30
    assert all(s.answer.startswith("findings:") for s in reports)
    assert not any(s.answer.startswith("findings:") for s in bench.public if s.task == "report")


def test_geometry_scales_with_image_size() -> None:
    # Prepare / Execute
    big = load_fedmed_synth(
        None,
        seed=0,
        image_size=64,
        public_size=60,
        train_sizes={"vqa": 0, "report": 0, "detection": 0},
        test_size=0,
    )
    # Assert
    assert all(s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8 for s in big.public)
    for s in big.public:
        scene = s.meta["scene"]
        for les in scene.lesions:
            assert 6.0 - 1e-9 <= les.radius <= 14.0 + 1e-9
            assert scene.body.inside(np.array(les.center[0]), np.array(les.center[1]), les.radius)
        for i, a in enumerate(scene.lesions):
            for b in scene.lesions[i + 1 :]:
                gap = np.hypot(a.center[0] - b.center[0], a.center[1] - b.center[1])
                assert gap > a.radius + b.radius


def test_hydra_config_instantiates(tmp_path: Path) -> None:
    # Prepare
    from hydra.utils import instantiate

    cfg = OmegaConf.create(
        {"paths": {"data_dir": str(tmp_path)}, "seed": 0, "benchmark": OmegaConf.load(CONFIG)}
    )
    cfg.benchmark.public_size = 8
    cfg.benchmark.train_sizes = {"vqa": 3, "report": 2, "detection": 2}
    cfg.benchmark.test_size = 2
    # Execute
    bench = instantiate(cfg.benchmark)
    # Assert
    assert [len(c.train) for c in bench.clients] == [3, 2, 2]
    assert (tmp_path / "fedmed_synth").is_dir()


def test_unknown_train_size_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        load_fedmed_synth(None, train_sizes={"segmentation": 3})


@pytest.mark.slow
def test_default_sizes_generate_quickly(tmp_path: Path) -> None:
    # Execute
    start = time.perf_counter()
    bench = load_fedmed_synth(tmp_path)
    elapsed = time.perf_counter() - start
    # Assert (target is a few seconds on 2 cores; the bound is generous for slow CI)
    assert len(bench.public) == 4000
    assert [len(c.train) for c in bench.clients] == [300, 650, 600]
    assert elapsed < 120
