"""X-FLoRA's translation stage: aggregation weights, the asymmetric local update, augmentation,
quality measures (docs/modality.md, "Cross-modal translation")."""

from __future__ import annotations

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
    real_score = federated.quality_score

    def spy(gen, own_discs, items, limit=64):
        q = real_score(gen, own_discs, items, limit)
        discs = {m: {k: v.clone() for k, v in d.state_dict().items()} for m, d in own_discs.items()}
        seen.append(({k: v.clone() for k, v in gen.state_dict().items()}, discs, q))
        return q

    monkeypatch.setattr(federated, "quality_score", spy)
    clients = {
        "a": _items("ct", 6, 0, ("mri",)),
        "b": _items("ct", 2, 1, ("mri",)),
        "c": _items("mri", 4, 2, ("ct",)),
    }
    cfg = TranslationConfig(rounds=1, local_steps=2, batch_size=4, score_floor=0.05)
    result = train_translation(clients, ["ct", "mri"], cfg, seed=0)
    sizes = [6, 2, 4]
    raw = [n * min(1.0, max(0.05, q)) for n, (_g, _d, q) in zip(sizes, seen)]
    expected_w = [r / sum(raw) for r in raw]
    assert list(result.history[0]["weights"].values()) == pytest.approx(expected_w)
    assert len({round(w, 6) for w in expected_w}) == 3  # the scores did differ
    final = result.translator.state_dict()
    for key, value in final.items():
        mix = sum(w * g[key] for w, (g, _d, _q) in zip(expected_w, seen))
        torch.testing.assert_close(value, mix, rtol=1e-5, atol=1e-6)
    # Discriminators: ct over a and b by their ct images (6 and 2), mri = c's.
    discs = federated_discs(result)
    for key in seen[0][1]["ct"]:
        mix = (6 * seen[0][1]["ct"][key] + 2 * seen[1][1]["ct"][key]) / 8
        torch.testing.assert_close(discs["ct"][key], mix, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(discs["mri"][key], seen[2][1]["mri"][key])


def federated_discs(result) -> dict[str, dict[str, torch.Tensor]]:
    return {m: d.state_dict() for m, d in result.discriminators.items()}


def test_local_update_trains_own_discriminator_and_leaves_received_ones_alone():
    torch.manual_seed(0)
    gen = Translator(["ct", "mri"])
    received = {"ct": PatchDiscriminator(), "mri": PatchDiscriminator()}
    before = {m: [p.clone() for p in d.parameters()] for m, d in received.items()}
    own = {"ct": PatchDiscriminator()}
    own_before = [p.clone() for p in own["ct"].parameters()]
    gen_before = [p.clone() for p in gen.parameters()]
    cfg = TranslationConfig(local_steps=2, batch_size=4)
    out = local_update(
        gen, own, received, _items("ct", 8, 0, ("mri",)), cfg, np.random.default_rng(0)
    )
    for m, d in received.items():
        assert all(torch.equal(a, b) for a, b in zip(before[m], d.parameters()))
        assert all(p.grad is None or not p.grad.any() for p in d.parameters())
        assert all(p.requires_grad for p in d.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(own_before, own["ct"].parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(gen_before, gen.parameters()))
    assert out["steps"] == 2


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
    for src, copy in pairs:
        assert src.modality == "ct" and copy.modality in {"mri", "xray", "us"}
        assert copy.meta[TRANSLATED] == "ct" and copy.question == src.question
        assert copy.image.shape == (16, 16, 3) and copy.image.dtype == np.uint8
        expected = {"mri": "mri", "xray": "xray", "us": "ultrasound"}[copy.modality]
        assert copy.answer == (expected if src.meta["qtype"] == "modality" else src.answer)
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
