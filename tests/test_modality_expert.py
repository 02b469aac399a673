"""Modality-expert LoRA: the layer's maths, per-sample routing, and routing through generation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from multimodal_helpers import make_samples, randomise, tiny_engine
from torch import nn

from fedmllm.aggregators.expert_aware import key_modality
from fedmllm.lora import get_adapter_state
from fedmllm.lora.modality_expert import (
    ModalityExpertLinear,
    expert_modality,
    inject_modality_experts,
    modality_routing,
)
from fedmllm.methods.modality_expert_module import ModalityExpertMethod

MODS = ("ct", "mri", "xray")


def _layer(shared: bool = False) -> ModalityExpertLinear:
    torch.manual_seed(0)
    layer = ModalityExpertLinear(nn.Linear(6, 5), MODS, r=2, alpha=4.0, shared_expert=shared)
    randomise(layer, "lora_", seed=1)
    return layer


def _grads(layer: ModalityExpertLinear) -> dict[str, torch.Tensor | None]:
    return {n: p.grad for n, p in layer.named_parameters() if p.requires_grad}


def test_layer_output_is_base_plus_own_expert_per_row():
    layer = _layer(shared=True)
    x = torch.randn(4, 3, 6)
    tags = ["mri", "ct", "mri", "xray"]
    with modality_routing(layer, tags):
        y = layer(x)
    s = 4.0 / 2  # alpha / r
    w0, b0 = layer.base_layer.weight, layer.base_layer.bias
    sh = layer.shared.lora_B.weight @ layer.shared.lora_A.weight
    for i, m in enumerate(tags):
        e = layer.experts[m]
        expected = x[i] @ w0.T + b0 + s * x[i] @ (e.lora_B.weight @ e.lora_A.weight + sh).T
        torch.testing.assert_close(y[i], expected)


@pytest.mark.parametrize("row", range(4))
def test_a_sample_only_touches_its_modality_expert(row):
    layer = _layer(shared=True)
    tags = ["ct", "mri", "ct", "xray"]
    x = torch.randn(4, 3, 6)
    with modality_routing(layer, tags):
        layer(x)[row].pow(2).sum().backward()
    for name, grad in _grads(layer).items():
        own = name.startswith(f"experts.{tags[row]}.") or name.startswith("shared.")
        if own:
            assert grad is not None and grad.abs().sum() > 0, name
        else:  # other modalities' experts: no gradient at all, or exactly zero
            assert grad is None or torch.count_nonzero(grad) == 0, name


def test_missing_or_unknown_routing_is_a_clear_error():
    layer = _layer()
    with pytest.raises(RuntimeError, match="modality_routing"):
        layer(torch.randn(2, 6))
    with (
        pytest.raises(ValueError, match=r"\['us'\] have no expert"),
        modality_routing(layer, ["us", "ct"]),
    ):
        pass
    with (
        pytest.raises(ValueError, match="routing was set for 3 samples"),
        modality_routing(layer, ["ct"] * 3),
    ):
        layer(torch.randn(2, 6))
    with pytest.raises(ValueError, match="distinct"):
        ModalityExpertLinear(nn.Linear(2, 2), ["ct", "ct"], r=1, alpha=1)
    # the routing is cleared after the block, even after an error
    with pytest.raises(RuntimeError):
        layer(torch.randn(1, 6))


def test_expert_keys_parse_the_same_in_lora_and_aggregator():
    model = nn.Sequential()
    model.add_module("q_proj", nn.Linear(4, 4))
    inject_modality_experts(model, ["q_proj"], MODS, r=2, alpha=2, shared_expert=True)
    keys = sorted(get_adapter_state(model))
    assert keys == sorted(
        [f"q_proj.experts.{m}.lora_{ab}.weight" for m in MODS for ab in "AB"]
        + ["q_proj.shared.lora_A.weight", "q_proj.shared.lora_B.weight"]
    )
    for k in keys:
        expected = k.split(".")[2] if ".experts." in k else None
        assert expert_modality(k) == key_modality(k) == expected
    assert not any(p.requires_grad for p in model.q_proj.base_layer.parameters())


# ------------------------------------------------------------------- the method on the tiny model
@pytest.fixture
def expert_method(tmp_path):
    engine = tiny_engine(tmp_path)
    method = ModalityExpertMethod(
        engine, MODS, ["q_proj", "v_proj", "up_proj"], r=2, alpha=4, dropout=0.0
    )
    randomise(method.model, "experts", seed=3)
    return method


def test_a_sample_only_touches_its_expert_through_the_whole_model(expert_method):
    ct, mri = make_samples("ct", 1)[0], make_samples("mri", 2)[1]
    batch = expert_method.engine.collator([ct, mri])
    assert batch["modalities"] == ["ct", "mri"]  # the method tagged the training collator
    batch["labels"][1] = -100  # only the ct row contributes to the loss
    expert_method.training_step(batch).backward()
    touched = {m: 0.0 for m in MODS}
    for name, p in expert_method.model.named_parameters():
        if ".experts." in name and p.grad is not None:
            touched[expert_modality(name)] += p.grad.abs().sum().item()
    assert touched["ct"] > 0
    assert touched["mri"] == 0.0 and touched["xray"] == 0.0


def test_generation_keeps_each_row_on_its_expert(expert_method):
    m = expert_method
    ct, mri = make_samples("ct", 1)[0], make_samples("mri", 2, seed=5)[1]
    both = m.predict(m.engine.gen_collator([ct, mri]), max_new_tokens=5)
    alone = [m.predict(m.engine.gen_collator([s]), max_new_tokens=5)[0] for s in (ct, mri)]
    assert both == alone  # a mixed batch decodes each row as if it were alone

    # KV-cached decoding (one new token per forward) equals uncached decoding.
    batch = m.engine.gen_collator([ct, mri])
    inputs = {
        k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "pixel_values")
    }
    with torch.no_grad(), modality_routing(m.model, ["ct", "mri"]):
        cached = m.model.generate(**inputs, max_new_tokens=5, do_sample=False, use_cache=True)
        fresh = m.model.generate(**inputs, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(cached, fresh)


def test_the_tag_decides_the_expert(expert_method):
    m = expert_method
    sample = make_samples("ct", 1)[0]
    as_mri = dataclasses.replace(sample, modality="mri")
    batch = m.engine.collator([sample, as_mri])
    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "labels"}
    with torch.no_grad(), modality_routing(m.model, batch["modalities"]):
        logits = m.model(**inputs).logits
    assert not torch.allclose(logits[0], logits[1])  # same input, different expert
    with torch.no_grad(), modality_routing(m.model, ["ct", "ct"]):
        same = m.model(**inputs).logits
    torch.testing.assert_close(same[0], same[1])
