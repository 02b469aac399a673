"""Tests of fedmllm.lora: layers, injection, adapter state and the PEFT on-disk format."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
from torch import nn

from fedmllm.lora import (
    AdapterLayer,
    LoRALinear,
    adapter_parameter_names,
    available_linear_names,
    filter_state,
    get_adapter_state,
    inject_lora,
    load_adapter,
    save_adapter,
    set_adapter_state,
    state_bytes,
)

HIDDEN = 16


class Block(nn.Module):
    """A Llama-ish block: attention projections and an MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(HIDDEN, HIDDEN)
        self.k_proj = nn.Linear(HIDDEN, HIDDEN)
        self.v_proj = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.up_proj = nn.Linear(HIDDEN, 2 * HIDDEN)
        self.down_proj = nn.Linear(2 * HIDDEN, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.q_proj(h) * torch.sigmoid(self.k_proj(h)) + self.v_proj(h)
        return h + self.down_proj(torch.relu(self.up_proj(self.norm(a))))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(HIDDEN, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return self.head(x)


@pytest.fixture
def tiny() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def randomise_adapters(model: nn.Module, seed: int) -> None:
    """Give every adapter parameter non-zero random values (B is zero at init)."""
    gen = torch.Generator().manual_seed(seed)
    names = set(adapter_parameter_names(model))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in names:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)


# ---------------------------------------------------------------- layers


def test_lora_linear_starts_as_base_layer() -> None:
    # Prepare
    torch.manual_seed(0)
    base = nn.Linear(8, 6)
    layer = LoRALinear(base, r=4, alpha=8, dropout=0.1)
    x = torch.randn(3, 8)
    # Execute
    layer.eval()
    out = layer(x)
    # Assert
    assert torch.equal(out, base(x))
    assert torch.count_nonzero(layer.lora_A.weight) > 0
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    assert isinstance(layer.lora_dropout, nn.Dropout)
    assert not base.weight.requires_grad
    assert layer.weight is base.weight


@pytest.mark.parametrize(("use_rslora", "scaling"), [(False, 12 / 4), (True, 12 / math.sqrt(4))])
def test_lora_linear_adds_scaled_low_rank_product(use_rslora: bool, scaling: float) -> None:
    # Prepare
    torch.manual_seed(0)
    base = nn.Linear(8, 6)
    layer = LoRALinear(base, r=4, alpha=12, use_rslora=use_rslora)
    a, b = torch.randn(4, 8), torch.randn(6, 4)
    with torch.no_grad():
        layer.lora_A.weight.copy_(a)
        layer.lora_B.weight.copy_(b)
    x = torch.randn(5, 8)
    # Execute
    out = layer(x)
    # Assert
    assert layer.scaling == pytest.approx(scaling)
    torch.testing.assert_close(out, base(x) + scaling * x @ a.T @ b.T)
    torch.testing.assert_close(layer.delta_weight(), scaling * b @ a)


def test_merge_matches_unmerged_and_unmerge_restores_base() -> None:
    # Prepare
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 6), r=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    w0 = layer.base_layer.weight.detach().clone()
    x = torch.randn(5, 8)
    expected = layer(x)
    # Execute
    layer.merge()
    merged_out = layer(x)
    merged_weight = layer.base_layer.weight.detach().clone()
    layer.unmerge()
    # Assert
    torch.testing.assert_close(merged_out, expected)
    torch.testing.assert_close(merged_weight, w0 + layer.delta_weight())
    torch.testing.assert_close(layer.base_layer.weight, w0)
    torch.testing.assert_close(layer(x), expected)
    with pytest.raises(RuntimeError):
        layer.unmerge()


def test_half_precision_base_gets_float32_adapter_and_keeps_output_dtype() -> None:
    # Prepare
    base = nn.Linear(8, 6).to(torch.bfloat16)
    layer = LoRALinear(base, r=2, alpha=2)
    # Execute
    out = layer(torch.randn(3, 8, dtype=torch.bfloat16))
    # Assert
    assert layer.lora_A.weight.dtype == torch.float32
    assert out.dtype == torch.bfloat16


def test_lora_linear_rejects_bad_rank() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoRALinear(nn.Linear(4, 4), r=0, alpha=1)


# ---------------------------------------------------------------- injection


def test_inject_replaces_exactly_targets_and_freezes_the_rest(tiny: Tiny) -> None:
    # Prepare
    x = torch.randn(3, HIDDEN)
    before = tiny(x)
    # Execute
    replaced = inject_lora(tiny, ["q_proj", "up_proj"], r=2, alpha=4)
    # Assert
    assert replaced == [
        "layers.0.q_proj",
        "layers.0.up_proj",
        "layers.1.q_proj",
        "layers.1.up_proj",
    ]
    for block in tiny.layers:
        assert isinstance(block.q_proj, LoRALinear) and isinstance(block.up_proj, LoRALinear)
        assert type(block.k_proj) is nn.Linear and type(block.v_proj) is nn.Linear
    trainable = {n for n, p in tiny.named_parameters() if p.requires_grad}
    assert trainable == set(adapter_parameter_names(tiny))
    assert trainable == {f"{m}.lora_{ab}.weight" for m in replaced for ab in "AB"}
    assert torch.equal(tiny(x), before)


def test_inject_honours_module_filter(tiny: Tiny) -> None:
    # Execute
    replaced = inject_lora(tiny, ["q_proj", "v_proj"], r=2, alpha=4, module_filter=r"layers\.1\.")
    # Assert
    assert replaced == ["layers.1.q_proj", "layers.1.v_proj"]
    assert type(tiny.layers[0].q_proj) is nn.Linear


def test_inject_with_layer_factory_reuses_the_walk(tiny: Tiny) -> None:
    # Prepare
    seen: list[str] = []

    def factory(name: str, linear: nn.Linear) -> AdapterLayer:
        seen.append(name)
        return LoRALinear(linear, r=3, alpha=3)

    # Execute
    inject_lora(tiny, ["k_proj"], r=1, alpha=1, layer_factory=factory)
    # Assert
    assert sorted(seen) == ["layers.0.k_proj", "layers.1.k_proj"]
    assert tiny.layers[0].k_proj.r == 3


@pytest.mark.parametrize(
    ("targets", "kwargs", "message"),
    [
        (["q_proj", "nope"], {}, r"\['nope'\].*available Linear names.*'down_proj'"),
        (["layers"], {}, "not nn.Linear"),
        (["q_proj"], {"module_filter": "vision"}, "module_filter"),
        (["q_proj"], {"r": 0}, "positive"),
    ],
)
def test_inject_errors(tiny: Tiny, targets: list[str], kwargs: dict, message: str) -> None:
    args = {"r": 2, "alpha": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        inject_lora(tiny, targets, **args)
    assert type(tiny.layers[0].q_proj) is nn.Linear  # validated before any replacement


def test_inject_twice_into_same_module_raises(tiny: Tiny) -> None:
    inject_lora(tiny, ["q_proj"], r=2, alpha=4)
    with pytest.raises(ValueError, match="already holds an adapter"):
        inject_lora(tiny, ["q_proj", "k_proj"], r=2, alpha=4)


def test_available_linear_names_hide_adapter_internals(tiny: Tiny) -> None:
    inject_lora(tiny, ["q_proj"], r=2, alpha=4)
    names = available_linear_names(tiny)
    assert names == ["down_proj", "head", "k_proj", "up_proj", "v_proj"]


def test_inject_into_tiny_llama_trains_only_adapters() -> None:
    # Prepare
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    model = transformers.LlamaForCausalLM(config)
    ids = torch.randint(0, 64, (2, 7))
    before = model(input_ids=ids).logits
    # Execute
    replaced = inject_lora(model, ["q_proj", "v_proj", "up_proj"], r=4, alpha=8)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    # Assert
    assert replaced == [
        "model.layers.0.mlp.up_proj",
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.v_proj",
    ]
    assert torch.equal(out.logits, before)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) <= set(adapter_parameter_names(model))
    assert torch.count_nonzero(grads["model.layers.0.self_attn.q_proj.lora_B.weight"]) > 0


# ---------------------------------------------------------------- adapter state


def test_state_swap_changes_output_and_swapping_back_restores_it(tiny: Tiny) -> None:
    # Prepare
    inject_lora(tiny, ["q_proj", "v_proj", "up_proj"], r=2, alpha=4)
    x = torch.randn(4, HIDDEN)
    randomise_adapters(tiny, seed=1)
    state_1, out_1 = get_adapter_state(tiny), tiny(x)
    randomise_adapters(tiny, seed=2)
    state_2 = get_adapter_state(tiny)
    ptrs = {n: p.data_ptr() for n, p in tiny.named_parameters()}
    # Execute
    set_adapter_state(tiny, state_2)
    out_2 = tiny(x)
    set_adapter_state(tiny, state_1)
    out_back = tiny(x)
    # Assert
    assert not torch.allclose(out_2, out_1)
    assert torch.equal(out_back, out_1)
    assert {n: p.data_ptr() for n, p in tiny.named_parameters()} == ptrs
    assert all(p.requires_grad for n, p in tiny.named_parameters() if "lora_" in n)


def test_get_adapter_state_returns_detached_cpu_copies(tiny: Tiny) -> None:
    # Prepare
    inject_lora(tiny, ["q_proj"], r=2, alpha=4)
    key = "layers.0.q_proj.lora_A.weight"
    # Execute
    state = get_adapter_state(tiny)
    only = get_adapter_state(tiny, keys=[key])
    with torch.no_grad():
        tiny.layers[0].q_proj.lora_A.weight.add_(1.0)
    # Assert
    assert sorted(state) == sorted(adapter_parameter_names(tiny))
    assert list(only) == [key]
    assert not torch.equal(state[key], tiny.layers[0].q_proj.lora_A.weight)
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in state.values())
    assert not any(t.requires_grad for t in state.values())
    with pytest.raises(KeyError):
        get_adapter_state(tiny, keys=["layers.0.q_proj.base_layer.weight"])


def test_set_adapter_state_partial_state_keeps_other_keys(tiny: Tiny) -> None:
    # Prepare
    inject_lora(tiny, ["q_proj"], r=2, alpha=4)
    before = get_adapter_state(tiny)
    partial = {k: torch.ones_like(v) for k, v in before.items() if "lora_B" in k}
    # Execute
    set_adapter_state(tiny, partial)
    after = get_adapter_state(tiny)
    # Assert
    for key in before:
        expected = partial[key] if key in partial else before[key]
        assert torch.equal(after[key], expected)


def test_set_adapter_state_rejects_unknown_keys(tiny: Tiny) -> None:
    # Prepare: PEFT-style keys with the adapter name are the classic silent failure.
    inject_lora(tiny, ["q_proj"], r=2, alpha=4)
    state = get_adapter_state(tiny)
    wrong = {k.replace("lora_A", "lora_A.default"): v for k, v in state.items()}
    mixed = dict(state) | {"layers.0.k_proj.weight": torch.zeros(HIDDEN, HIDDEN)}
    # Execute / Assert
    with pytest.raises(KeyError, match="lora_A.default"):
        set_adapter_state(tiny, wrong)
    with pytest.raises(KeyError, match="k_proj"):
        set_adapter_state(tiny, mixed)
    set_adapter_state(tiny, mixed | {k: v + 1 for k, v in state.items()}, strict=False)
    assert torch.equal(
        get_adapter_state(tiny)["layers.0.q_proj.lora_A.weight"],
        state["layers.0.q_proj.lora_A.weight"] + 1,
    )
    with pytest.raises(KeyError):
        set_adapter_state(tiny, {"nothing.matches": torch.zeros(1)}, strict=False)


def test_set_adapter_state_rejects_shape_mismatch_and_merged_layers(tiny: Tiny) -> None:
    # Prepare
    inject_lora(tiny, ["q_proj"], r=2, alpha=4)
    key = "layers.1.q_proj.lora_B.weight"
    # Execute / Assert
    with pytest.raises(ValueError, match=r"layers\.1\.q_proj\.lora_B\.weight"):
        set_adapter_state(tiny, {key: torch.zeros(HIDDEN, 3)})
    tiny.layers[1].q_proj.merge()
    with pytest.raises(RuntimeError, match="merged"):
        set_adapter_state(tiny, {key: torch.zeros(HIDDEN, 2)})


def test_filter_state_and_state_bytes() -> None:
    # Prepare
    state = {
        "a.q_proj.lora_A.weight": torch.zeros(2, 4),
        "a.q_proj.lora_B.weight": torch.zeros(4, 2, dtype=torch.float16),
        "a.v_proj.lora_A.weight": torch.zeros(2, 4),
    }
    # Execute
    only_a = filter_state(state, "lora_A")
    q_or_v = filter_state(state, ["q_proj", "v_proj"])
    by_predicate = filter_state(state, lambda k: k.startswith("a.v"))
    # Assert
    assert list(only_a) == ["a.q_proj.lora_A.weight", "a.v_proj.lora_A.weight"]
    assert list(q_or_v) == list(state)
    assert list(by_predicate) == ["a.v_proj.lora_A.weight"]
    assert state_bytes(state) == 8 * 4 + 8 * 2 + 8 * 4


# ---------------------------------------------------------------- PEFT format


def _peft_twin(base: nn.Module, r: int, alpha: float, targets: list[str]) -> nn.Module:
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, use_rslora=True)
    return peft.get_peft_model(copy.deepcopy(base), config)


def test_saved_adapter_loads_into_real_peft_model(tiny: Tiny, tmp_path) -> None:
    # Prepare
    peft = pytest.importorskip("peft")
    from safetensors.torch import load_file

    targets = ["q_proj", "v_proj", "up_proj"]
    clean = copy.deepcopy(tiny)
    twin = _peft_twin(tiny, r=4, alpha=6, targets=targets)
    inject_lora(tiny, targets, r=4, alpha=6, use_rslora=True)
    randomise_adapters(tiny, seed=3)
    x = torch.randn(5, HIDDEN)
    config = {"r": 4, "lora_alpha": 6, "target_modules": targets, "use_rslora": True}
    # Execute
    save_adapter(get_adapter_state(tiny), tmp_path, config)
    result = peft.set_peft_model_state_dict(twin, load_file(tmp_path / "adapter_model.safetensors"))
    from_disk = peft.PeftModel.from_pretrained(clean, tmp_path)
    # Assert
    assert result.unexpected_keys == []
    assert not [k for k in result.missing_keys if "lora_" in k]
    torch.testing.assert_close(twin(x), tiny(x))
    torch.testing.assert_close(from_disk(x), tiny(x))
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_peft_saved_adapter_loads_into_our_model(tiny: Tiny, tmp_path) -> None:
    # Prepare
    targets = ["k_proj", "down_proj"]
    twin = _peft_twin(tiny, r=2, alpha=5, targets=targets)
    with torch.no_grad():
        for name, param in twin.named_parameters():
            if "lora_B" in name:
                param.normal_()
    twin.save_pretrained(tmp_path)
    inject_lora(tiny, targets, r=2, alpha=5, use_rslora=True)
    x = torch.randn(5, HIDDEN)
    # Execute
    state, config = load_adapter(tmp_path)
    set_adapter_state(tiny, state)
    # Assert
    assert config["peft_type"] == "LORA" and config["r"] == 2 and config["use_rslora"]
    assert sorted(state) == sorted(adapter_parameter_names(tiny))
    torch.testing.assert_close(tiny(x), twin(x))


def test_save_adapter_round_trip_and_errors(tmp_path) -> None:
    # Prepare
    state = {
        "m.q_proj.lora_A.weight": torch.randn(2, 4),
        "m.q_proj.lora_B.weight": torch.randn(4, 2),
    }
    # Execute
    save_adapter(state, tmp_path / "ad", {"r": 2, "lora_alpha": 4, "fedmllm_round": 3})
    loaded, config = load_adapter(tmp_path / "ad")
    # Assert
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert config["target_modules"] == ["q_proj"] and config["fedmllm_round"] == 3
    with pytest.raises(ValueError, match="lora_alpha"):
        save_adapter(state, tmp_path / "bad", {"r": 2})
    with pytest.raises(FileNotFoundError):
        load_adapter(tmp_path / "missing")
