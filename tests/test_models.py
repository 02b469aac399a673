"""Tests of the models room: tokeniser, collate, tiny LLaVA, pretraining cache, engines."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from fedmllm.configs import CONFIG_DIR
from fedmllm.data.collate import IGNORE_INDEX, VLMCollator
from fedmllm.data.schema import Sample
from fedmllm.models import (
    PretrainConfig,
    TinyVLMConfig,
    build_hf_engine,
    build_tiny_llava,
    build_tiny_vlm,
    build_word_tokenizer,
    decode_text,
    get_template,
    pretrain,
)
from fedmllm.models.pretrain import lr_multiplier

CONFIGS = CONFIG_DIR / "model"
WORDS = (  # noqa: SIM905 (a sentence of words reads better than a 29-line list)
    "is there a lesion in the image yes no how many lesions are where upper lower left right "
    "liver shows mm hypodense lobe ascites free air findings box of"
).split()
BOX = "[0.12, 0.34, 0.56, 0.78]"
REPORT = "the liver shows a 12 mm hypodense lesion in the left lobe. no ascites, no free air."
# Smaller than the default so that every test builds and trains in well under a second.
TINY = TinyVLMConfig(
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    vision_intermediate=64,
    patch_size=4,
    image_size=16,
    text_hidden=64,
    text_layers=2,
    text_heads=2,
    text_intermediate=128,
    max_position_embeddings=128,
)


def make_samples(n: int, size: int = 16, seed: int = 0) -> list[Sample]:
    """Hand-made samples whose answer depends on the image (bright = lesion)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lesion = i % 2 == 0
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        if lesion:
            img[2:8, 2:8] = 250
        if i % 3 == 2:
            out.append(
                Sample(
                    img,
                    "ct",
                    "Where is the lesion in the image?",
                    BOX,
                    "detection",
                    box=(0.12, 0.34, 0.56, 0.78),
                )
            )
        else:
            out.append(
                Sample(img, "ct", "Is there a lesion?", "yes" if lesion else "no", "vqa", "closed")
            )
    return out


@pytest.fixture(scope="module")
def template():
    return get_template("llava")


@pytest.fixture(scope="module")
def tokenizer(template):
    return build_word_tokenizer(WORDS, [template.prompt("")])


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("text", [BOX, "[0.05, 0.9, 1.0, 0.5]", REPORT, "yes"])
def test_decode_text_round_trips_boxes_and_sentences(tokenizer, text):
    ids = encode(tokenizer, text) + [tokenizer.eos_token_id, tokenizer.pad_token_id]
    assert tokenizer.unk_token_id not in ids
    assert decode_text(tokenizer, ids) == text


def test_tokenizer_splits_digits_lowercases_and_keeps_specials(tokenizer):
    assert tokenizer.convert_ids_to_tokens(encode(tokenizer, "Lesion 305")) == [
        "lesion",
        "3",
        "0",
        "5",
    ]
    ids = tokenizer("USER: <image>\nIs there")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.convert_tokens_to_ids("<image>")) == 1
    assert encode(tokenizer, "zebra") == [tokenizer.unk_token_id]


def test_tokenizer_save_load_keeps_ids_and_specials(tokenizer, tmp_path):
    from transformers import PreTrainedTokenizerFast

    tokenizer.save_pretrained(tmp_path)
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert encode(loaded, REPORT) == encode(tokenizer, REPORT)
    for name in ("pad_token_id", "unk_token_id", "bos_token_id", "eos_token_id"):
        assert getattr(loaded, name) == getattr(tokenizer, name) is not None
    assert loaded.image_token == "<image>"


# ----------------------------------------------------------------------------------- collate


def test_collator_supervises_exactly_answer_and_eos(tokenizer, template):
    samples = make_samples(3)
    batch = VLMCollator(tokenizer, template, TINY.num_image_tokens, TINY.image_size)(samples)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert batch["pixel_values"].shape == (3, 3, 16, 16)
    assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1
    for row, sample in enumerate(samples):
        ids, labels, mask = (
            batch["input_ids"][row],
            batch["labels"][row],
            batch["attention_mask"][row],
        )
        expected = encode(tokenizer, " " + sample.answer) + [tokenizer.eos_token_id]
        assert labels[labels != IGNORE_INDEX].tolist() == expected
        # Supervised tokens are the last real tokens; padding is on the right.
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any()
        assert labels[n - len(expected) : n].tolist() == expected
        assert (ids[:n] == image_id).sum() == TINY.num_image_tokens
        assert (labels[ids == image_id] == IGNORE_INDEX).all()


def test_generate_collator_left_pads_prompts_only(tokenizer, template):
    samples = make_samples(3)  # the third sample has a longer question
    batch = VLMCollator(
        tokenizer, template, TINY.num_image_tokens, TINY.image_size, mode="generate"
    )(samples)
    assert "labels" not in batch and batch["samples"] == samples
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and not mask[0, 0]
    assert (batch["input_ids"][mask == 0] == tokenizer.pad_token_id).all()
    assert batch["input_ids"][0, -1] == tokenizer.convert_tokens_to_ids(":")  # "ASSISTANT:"


def test_collator_text_only_resizing_and_paths(tokenizer, template, tmp_path):
    collate = VLMCollator(tokenizer, template, TINY.num_image_tokens, TINY.image_size)
    text_only = [Sample(None, "text", "Is there a lesion?", "no", "vqa")]
    batch = collate(text_only)
    assert "pixel_values" not in batch
    assert tokenizer.convert_tokens_to_ids("<image>") not in batch["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="mixes"):
        collate(text_only + make_samples(1))
    big = np.full((40, 24, 3), 255, dtype=np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(big).save(path)
    batch = collate(
        [
            Sample(big, "ct", "Is there?", "yes", "vqa"),
            Sample(path, "ct", "Is there?", "yes", "vqa"),
        ]
    )
    assert batch["pixel_values"].shape == (2, 3, 16, 16)
    assert torch.allclose(batch["pixel_values"], torch.ones(1))


# ---------------------------------------------------------------------------- model, engine


def test_tiny_llava_has_llava_module_names_and_default_size(tokenizer):
    model = build_tiny_llava(TinyVLMConfig(), tokenizer)
    names = {n for n, _ in model.named_modules()}
    expected = [
        f"model.language_model.layers.2.self_attn.{p}"
        for p in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    expected += [
        f"model.language_model.layers.2.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")
    ]
    expected += ["model.multi_modal_projector.linear_1", "model.multi_modal_projector.linear_2"]
    expected += [
        f"model.vision_tower.encoder.layers.1.self_attn.{p}" for p in ("q_proj", "out_proj")
    ]
    assert set(expected) <= names
    assert 4e5 < sum(p.numel() for p in model.parameters()) < 2e6
    with pytest.raises(ValueError, match="unknown TinyVLMConfig keys"):
        TinyVLMConfig.from_dict({"text_hiden": 3})


def test_engine_generate_is_deterministic_and_batch_independent(tmp_path):
    samples = make_samples(4)
    engine = build_tiny_vlm(tmp_path, samples, WORDS, config=TINY, pretrain={"steps": 0})
    assert not any(p.requires_grad for p in engine.model.parameters())
    batch = engine.gen_collator(samples)
    first = engine.generate(batch, max_new_tokens=6)
    assert first == engine.generate(batch, max_new_tokens=6)
    assert len(first) == 4 and all(isinstance(a, str) for a in first)
    # Left padding must not change a row's answer.
    assert engine.generate(engine.gen_collator(samples[2:3]), max_new_tokens=6) == first[2:3]
    assert not (tmp_path / "models").exists()  # steps=0 touches no cache


def test_pretraining_lowers_loss_on_a_fixed_batch(tokenizer, template):
    samples = make_samples(16)
    collate = VLMCollator(tokenizer, template, TINY.num_image_tokens, TINY.image_size)
    torch.manual_seed(0)
    model = build_tiny_llava(TINY, tokenizer)
    batch = collate(samples)
    with torch.no_grad():
        before = model(**batch).loss.item()
    cfg = PretrainConfig(steps=30, batch_size=8, lr=3e-3, warmup=5)
    result = pretrain(model, collate, samples, cfg, progress=False)
    with torch.no_grad():
        after = model(**batch).loss.item()
    assert len(result.losses) == 30 and not model.training
    assert after < 0.5 * before


def test_lr_schedule_warms_up_then_decays():
    cfg = PretrainConfig(steps=100, warmup=10, min_lr_ratio=0.1)
    assert lr_multiplier(0, cfg) == pytest.approx(0.1)
    assert lr_multiplier(9, cfg) == pytest.approx(1.0)
    assert lr_multiplier(55, cfg) < lr_multiplier(20, cfg)
    assert lr_multiplier(100, cfg) == pytest.approx(0.1)


def _weights(engine) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in engine.model.state_dict().items()}


def test_cache_reloads_without_training_and_rebuilds_when_corrupt(tmp_path, caplog):
    samples = make_samples(8)
    pre = {"steps": 3, "batch_size": 4, "lr": 1e-3, "warmup": 1}
    first = build_tiny_vlm(tmp_path, samples, WORDS, config=TINY, pretrain=pre, progress=False)
    path = Path(first.info["cache_path"])
    assert not first.info["from_cache"] and (path / "manifest.json").is_file()
    assert not list(path.parent.glob(".*tmp*"))  # temp build dir renamed away

    second = build_tiny_vlm(tmp_path, samples, WORDS, config=TINY, pretrain=pre, progress=False)
    assert second.info["from_cache"]
    w1, w2 = _weights(first), _weights(second)
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    batch = first.gen_collator(samples[:2])
    assert first.generate(batch, 4) == second.generate(batch, 4)

    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING, logger="fedmllm.models.engine"):
        third = build_tiny_vlm(tmp_path, samples, WORDS, config=TINY, pretrain=pre, progress=False)
    assert "model.safetensors" in caplog.text
    assert not third.info["from_cache"]
    w3 = _weights(third)
    assert all(torch.equal(w1[k], w3[k]) for k in w1)  # seeded: the rebuild is identical
    assert build_tiny_vlm(tmp_path, samples, WORDS, config=TINY, pretrain=pre, progress=False).info[
        "from_cache"
    ]

    (path / "manifest.json").unlink()  # what an interrupted build would leave
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fedmllm.models.engine"):
        fourth = build_tiny_vlm(tmp_path, samples, WORDS, config=TINY, pretrain=pre, progress=False)
    assert "manifest.json" in caplog.text and not fourth.info["from_cache"]
    assert (path / "manifest.json").is_file()

    # A different public split is a different cache entry.
    other = build_tiny_vlm(
        tmp_path, make_samples(8, seed=1), WORDS, config=TINY, pretrain=pre, progress=False
    )
    assert other.info["cache_path"] != first.info["cache_path"]


# ------------------------------------------------------------------------------ HF and configs


def test_hf_engine_loads_a_local_llava(tmp_path, tokenizer, template):
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    model = build_tiny_llava(TINY, tokenizer)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 16},
        crop_size={"height": 16, "width": 16},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=TINY.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    engine = build_hf_engine(str(tmp_path), "llava")
    samples = make_samples(2)
    train = engine.collator(samples)
    ours = VLMCollator(tokenizer, template, TINY.num_image_tokens, TINY.image_size)(samples)
    assert torch.equal(train["input_ids"], ours["input_ids"])
    assert torch.equal(train["labels"], ours["labels"])
    answers = engine.generate(engine.gen_collator(samples), max_new_tokens=3)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert engine.image_size == 16


def test_hf_engine_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="local_files_only=false"):
        build_hf_engine(str(tmp_path / "absent"), "llava")


@pytest.mark.parametrize("name", ["tiny_vlm", "tiny_vlm_base"])
def test_model_configs_match_the_builder(name):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"), resolve=False)
    assert cfg["_target_"] == "fedmllm.models.build_tiny_vlm"
    TinyVLMConfig.from_dict(cfg["config"])
    PretrainConfig.from_dict(cfg["pretrain"])
