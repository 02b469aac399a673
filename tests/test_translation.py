"""X-FLoRA's translation stage: aggregation weights, the asymmetric local update, augmentation,
quality measures (docs/modality.md, "Cross-modal translation")."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fedmllm.data.schema import Sample
from fedmllm.data.synthmed.scene import Scene
from fedmllm.translation import federated
from fedmllm.translation.augment import TRANSLATED, translate_samples
from fedmllm.translation.benchmark import allowed_targets, answer_for
from fedmllm.translation.federated import (
    TranslationConfig,
    TranslationItem,
    local_update,
    score_weights,
    train_translation,
)
from fedmllm.translation.models import PatchDiscriminator, Translator
from fedmllm.translation.quality import frechet_distance

MODS = ["ct", "mri", "xray", "us"]


def _items(modality: str, n: int, seed: int, targets: tuple[str, ...]) -> list[TranslationItem]:
    rng = np.random.default_rng(seed)
    return [
        TranslationItem(
            rng.integers(0, 256, (16, 16, 1), dtype=np.uint8).repeat(3, axis=2),
            modality,
            f"is there a tumor {i % 3}",
            targets,
        )  # fmt: skip
        for i in range(n)
    ]


def test_score_weights_by_hand():
    # n = (100, 300, 200), q = (0.5, 0.2, none -> floor 0.05): n·q = 50, 60, 10 of 120.
    w = score_weights([100, 300, 200], [0.5, 0.2, None], "score", 0.05)
    assert w == pytest.approx([50 / 120, 60 / 120, 10 / 120])
    # A score above 1 counts as 1, below the floor as the floor: 10·1 and 30·0.1 of 13.
    assert score_weights([10, 30], [1.7, 0.01], "score", 0.1) == pytest.approx([10 / 13, 3 / 13])
    assert score_weights([100, 300, 200], [0.5, 0.2, None], "uniform") == pytest.approx(
        [1 / 6, 1 / 2, 1 / 3]
    )
    with pytest.raises(ValueError, match="weighting"):
        score_weights([1], [0.5], "median")


def test_server_averages_translators_by_scores_and_discriminators_by_holders(monkeypatch):
    """The global translator after a round is Σ_k w_k·G_k with w_k = n_k·q_k / Σ n_j·q_j (the
    scores the clients reported), and D_m the sample-weighted mean of the holders of m."""
    seen: list[tuple[dict, dict, float | None]] = []
    local_discs: list[dict] = []
    real_score, real_update = federated.quality_score, federated.local_update

    def clone(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in module.state_dict().items()}

    def update_spy(gen, discs, received, items, cfg, rng):
        out = real_update(gen, discs, received, items, cfg, rng)
        local_discs.append({m: clone(d) for m, d in discs.items()})
        return out

    def score_spy(gen, own_discs, items, limit=64):
        q = real_score(gen, own_discs, items, limit)
        seen.append((clone(gen), local_discs[-1], q))
        return q

    monkeypatch.setattr(federated, "local_update", update_spy)
    monkeypatch.setattr(federated, "quality_score", score_spy)
    clients = {
        "a": _items("ct", 6, 0, ("mri",)),
        "b": _items("ct", 2, 1, ("mri",)),
        "c": _items("mri", 4, 2, ("ct",)),
    }
    cfg = TranslationConfig(rounds=1, local_steps=2, batch_size=4, score_floor=0.05)
    result = train_translation(clients, ["ct", "mri"], cfg, seed=0)
    sizes = [6, 2, 4]
    raw = [n * min(1.0, max(0.05, q)) for n, (_g, _d, q) in zip(sizes, seen, strict=True)]
    expected_w = [r / sum(raw) for r in raw]
    assert list(result.history[0]["weights"].values()) == pytest.approx(expected_w)
    assert len({round(w, 6) for w in expected_w}) == 3  # the scores did differ
    final = result.translator.state_dict()
    for key, value in final.items():
        mix = sum(w * g[key] for w, (g, _d, _q) in zip(expected_w, seen, strict=True))
        torch.testing.assert_close(value, mix, rtol=1e-5, atol=1e-6)
    # Discriminators, weighted by the images each client showed them: a (6 images, batch 4,
    # min(2 steps, ceil(2·6/4) = 3) = 2 steps) shows D_ct 2·(4 real + 4 backward) = 16 and
    # D_mri 2·4 forward = 8; b (2 images, min(2, ceil(4/4)) = 1 step of 2) D_ct 4, D_mri 2;
    # c (4 images, 2 steps of 4) D_mri 16, D_ct 8.
    fed = result.history[0]["disc_images"]
    assert fed == {"a": {"ct": 16, "mri": 8}, "b": {"ct": 4, "mri": 2}, "c": {"mri": 16, "ct": 8}}
    discs = federated_discs(result)
    for m, n in {"ct": (16, 4, 8), "mri": (8, 2, 16)}.items():
        for key, value in discs[m].items():
            mix = sum(nk * d[m][key] for nk, (_g, d, _q) in zip(n, seen, strict=True)) / sum(n)
            torch.testing.assert_close(value, mix, rtol=1e-5, atol=1e-6)


def federated_discs(result) -> dict[str, dict[str, torch.Tensor]]:
    return {m: d.state_dict() for m, d in result.discriminators.items()}


def test_local_update_trains_local_discriminators_and_leaves_received_ones_alone():
    torch.manual_seed(0)
    gen = Translator(["ct", "mri"])
    received = {"ct": PatchDiscriminator(), "mri": PatchDiscriminator()}
    before = {m: [p.clone() for p in d.parameters()] for m, d in received.items()}
    local = {m: copy.deepcopy(d) for m, d in received.items()}
    gen_before = [p.clone() for p in gen.parameters()]
    cfg = TranslationConfig(local_steps=2, batch_size=4)
    items = _items("ct", 8, 0, ("mri",))
    out = local_update(gen, local, received, items, cfg, np.random.default_rng(0))
    for m, d in received.items():
        assert all(torch.equal(a, b) for a, b in zip(before[m], d.parameters(), strict=True))
        assert all(p.grad is None or not p.grad.any() for p in d.parameters())
        assert all(p.requires_grad for p in d.parameters())
        # own modality (real vs backward) and the target (forward fakes) both trained
        changed = zip(before[m], local[m].parameters(), strict=True)
        assert any(not torch.equal(a, b) for a, b in changed)
    assert any(not torch.equal(a, b) for a, b in zip(gen_before, gen.parameters(), strict=True))
    assert out["steps"] == 2
    assert out["disc_images"] == {"ct": 16, "mri": 8}


def test_local_steps_are_capped_by_epochs():
    cfg = TranslationConfig(local_steps=20, batch_size=16, max_epochs=2.0)
    assert federated.local_steps(cfg, 8) == 1  # ceil(2·8/16)
    assert federated.local_steps(cfg, 100) == 13  # ceil(2·100/16)
    assert federated.local_steps(cfg, 1000) == 20


def test_config_errors_name_the_option():
    with pytest.raises(ValueError, match="benchmark.translation has unknown keys"):
        TranslationConfig.from_any({"roundz": 3})
    with pytest.raises(ValueError, match="benchmark.translation.weighting"):
        TranslationConfig.from_any({"weighting": "best"})


def _sample(modality: str, organ: str, qtype: str, answer: str) -> Sample:
    scene = Scene.__new__(Scene)
    object.__setattr__(scene, "organ", organ)
    image = np.full((16, 16, 3), 100, dtype=np.uint8)
    meta = {"scene": scene, "qtype": qtype}
    return Sample(image, modality, "what kind of image is this?", answer, "vqa", "open", meta=meta)


def test_targets_are_the_other_modalities_that_show_the_organ():
    # ORGANS_BY_MODALITY: ct liver/kidney/lung, mri brain/liver/kidney, xray lung/kidney,
    # us liver/kidney.
    targets_of = allowed_targets(MODS)
    assert targets_of(_sample("ct", "lung", "organ", "lung")) == ("xray",)
    assert targets_of(_sample("ct", "kidney", "organ", "kidney")) == ("mri", "xray", "us")
    assert targets_of(_sample("mri", "brain", "organ", "brain")) == ()
    assert allowed_targets(["ct", "us"])(_sample("ct", "liver", "organ", "liver")) == ("us",)


def test_translated_copies_take_the_target_tag_and_answer():
    samples = [
        _sample("ct", "kidney", "modality", "ct"),
        _sample("ct", "kidney", "organ", "kidney"),
        _sample("mri", "brain", "organ", "brain"),  # no target: never copied
    ]
    gen = Translator(MODS).eval()
    pairs = translate_samples(gen, samples, allowed_targets(MODS), answer_for, 1.0, seed=0)
    assert len(pairs) == 2
    for src, dup in pairs:
        assert src.modality == "ct" and dup.modality in {"mri", "xray", "us"}
        assert dup.meta[TRANSLATED] == "ct" and dup.question == src.question
        assert dup.image.shape == (16, 16, 3) and dup.image.dtype == np.uint8
        expected = {"mri": "mri", "xray": "xray", "us": "ultrasound"}[dup.modality]
        assert dup.answer == (expected if src.meta["qtype"] == "modality" else src.answer)
    assert samples[0].modality == "ct" and samples[0].answer == "ct"  # sources untouched
    assert translate_samples(gen, samples, allowed_targets(MODS), answer_for, 0.0, 0) == []


def test_frechet_distance_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 3)) @ np.array([[1.0, 0.3, 0], [0, 1.0, 0.2], [0, 0, 0.5]])
    b = rng.normal(loc=0.5, size=(150, 3))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    sq = scipy_linalg.sqrtm(ca @ cb).real
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * sq)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_benchmark_adds_translations_to_train_only_and_caches_the_translator(tmp_path, monkeypatch):
    from fedmllm.data.synthmed.crossmodal import load_crossmodal_synth
    from fedmllm.translation import benchmark

    args = {"seed": 3, "public_size": 48, "train_sizes": {"vqa": 6}, "test_size": 3}
    tr = {"rounds": 1, "local_steps": 1, "batch_size": 4}
    bench = benchmark.load_crossmodal_xflora_synth(tmp_path, translation=tr, probe_steps=5, **args)
    plain = load_crossmodal_synth(tmp_path, **args)
    for c, p in zip(bench.clients, plain.clients, strict=True):
        assert [s.meta["scene"].scene_id for s in c.test] == [
            s.meta["scene"].scene_id for s in p.test
        ]
        real, extra = c.train[: len(p.train)], c.train[len(p.train) :]
        assert [s.modality for s in real] == [c.client_id] * len(p.train)
        assert extra and all(s.modality != c.client_id for s in extra)
        assert all(s.meta[TRANSLATED] == c.client_id for s in extra)
    assert bench.translation["quality"]["n_translated"] == sum(
        len(c.train) - 6 for c in bench.clients
    )

    def fail(*_a, **_k):
        raise AssertionError("the cached translator should have been used")

    monkeypatch.setattr(benchmark, "train_translation", fail)
    again = benchmark.load_crossmodal_xflora_synth(tmp_path, translation=tr, probe_steps=5, **args)
    for c, d in zip(bench.clients, again.clients, strict=True):
        assert all(np.array_equal(a.image, b.image) for a, b in zip(c.train, d.train, strict=True))
