"""Tests of the MoLE layer, its router, its injection and the adapter-path probe."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from fedmllm.lora import (
    LoRALinear,
    MoLELinear,
    TopKRouter,
    adapter_parameter_names,
    cross_client_cosine,
    get_adapter_state,
    inject_lora,
    inject_mole,
    load_balancing_loss,
    probe_layer,
    router_entropy,
    set_adapter_state,
)
from fedmllm.lora.state import PEFT_PREFIX

HIDDEN = 16


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(HIDDEN, HIDDEN)
        self.k_proj = nn.Linear(HIDDEN, HIDDEN)
        self.v_proj = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.up_proj = nn.Linear(HIDDEN, 2 * HIDDEN)
        self.down_proj = nn.Linear(2 * HIDDEN, HIDDEN)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.q_proj(h) * torch.sigmoid(self.k_proj(h)) + self.v_proj(h)
        return h + self.down_proj(torch.relu(self.up_proj(a)))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Block(), Block()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return x


def randomise(module: nn.Module, seed: int, scale: float = 0.3) -> None:
    """Non-zero random values in every adapter parameter (B starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    names = set(adapter_parameter_names(module))
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in names:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)


def dense_reference(layer: MoLELinear, x: torch.Tensor) -> torch.Tensor:
    """Eq. (6)-(7) computed densely: every expert on every token, masked softmax over top K."""
    logits = x @ layer.router.weight.T
    kth = logits.topk(layer.top_k, dim=-1).values[..., -1:]
    p = logits.masked_fill(logits < kth, float("-inf")).softmax(dim=-1)  # zero outside top K
    out = layer.base_layer(x) + layer.scaling * (x @ layer.lora_A.weight.T @ layer.lora_B.weight.T)
    for i, e in enumerate(layer.experts):
        out = out + p[..., i : i + 1] * layer.scaling * (x @ e.lora_A.weight.T @ e.lora_B.weight.T)
    return out


# ---------------------------------------------------------------- N = 0 is plain LoRA


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_mole_with_no_routed_experts_is_exactly_a_lora_layer(dropout: float) -> None:
    # Prepare
    torch.manual_seed(0)
    base = nn.Linear(HIDDEN, 2 * HIDDEN)
    mole = MoLELinear(copy.deepcopy(base), r=4, alpha=8, num_experts=0, dropout=dropout)
    lora = LoRALinear(copy.deepcopy(base), r=4, alpha=8, dropout=dropout)
    randomise(mole, 1)
    set_adapter_state(lora, get_adapter_state(mole))
    x = torch.randn(3, 5, HIDDEN)
    # Execute
    torch.manual_seed(7)
    y_mole = mole.train()(x)
    torch.manual_seed(7)
    y_lora = lora.train()(x)
    # Assert: same keys and shapes, bit-identical output (dropout draws included)
    assert {k: v.shape for k, v in mole.state_dict().items()} == {
        k: v.shape for k, v in lora.state_dict().items()
    }
    assert torch.equal(y_mole, y_lora)


def test_mole_n0_model_equals_peft_lora_given_the_same_weights() -> None:
    peft = pytest.importorskip("peft")
    # Prepare: MoLE (N=0) on up_proj and LoRA on q/k/v, random non-zero adapters
    torch.manual_seed(0)
    base = Tiny()
    ours = copy.deepcopy(base)
    inject_mole(ours, ["up_proj"], ["q_proj", "k_proj", "v_proj"], r=4, alpha=6, num_experts=0)
    randomise(ours, 3)
    config = peft.LoraConfig(
        r=4, lora_alpha=6, target_modules=["q_proj", "k_proj", "v_proj", "up_proj"]
    )
    twin = peft.get_peft_model(copy.deepcopy(base), config)
    state = {PEFT_PREFIX + k: v for k, v in get_adapter_state(ours).items()}
    # Execute
    result = peft.set_peft_model_state_dict(twin, state)
    x = torch.randn(4, HIDDEN)
    # Assert: every tensor loaded, outputs agree (and differ from the bare base)
    assert not result.unexpected_keys
    assert torch.allclose(ours.eval()(x), twin.eval()(x), atol=1e-6)
    assert not torch.allclose(ours(x), base(x), atol=1e-3)


# ---------------------------------------------------------------- routing and dispatch


def test_router_keeps_top_k_and_renormalises_softmax_over_them() -> None:
    router = TopKRouter(in_features=3, num_experts=3, top_k=2)
    with torch.no_grad():
        router.weight.copy_(torch.eye(3))
    routing = router(torch.tensor([[1.0, 3.0, 2.0]]))
    assert routing.indices.tolist() == [[1, 2]]
    e = math.e
    assert torch.allclose(routing.weights, torch.tensor([[e / (e + 1), 1 / (e + 1)]]))


@pytest.mark.parametrize(("n", "k"), [(4, 1), (4, 2), (8, 2), (3, 3)])
def test_sparse_dispatch_equals_the_dense_formula(n: int, k: int) -> None:
    torch.manual_seed(n * 10 + k)
    layer = MoLELinear(nn.Linear(HIDDEN, 2 * HIDDEN), r=4, alpha=8, num_experts=n, top_k=k)
    randomise(layer, 5)
    x = torch.randn(2, 7, HIDDEN)
    assert torch.allclose(layer(x), dense_reference(layer, x), atol=1e-5)


def _forced_router(layer: MoLELinear, chosen: list[int]) -> None:
    """Make every token choose ``chosen`` (input feature 0 is the constant 1)."""
    with torch.no_grad():
        layer.router.weight.zero_()
        for rank, i in enumerate(chosen):
            layer.router.weight[i, 0] = 10.0 - rank


def test_unchosen_experts_are_not_computed_and_get_no_gradient() -> None:
    # Prepare: 6 experts, every token routed to experts 1 and 4
    torch.manual_seed(0)
    layer = MoLELinear(nn.Linear(HIDDEN, HIDDEN), r=4, alpha=8, num_experts=6, top_k=2)
    randomise(layer, 2)
    _forced_router(layer, [4, 1])
    calls = [0] * 6
    for i, e in enumerate(layer.experts):
        e.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    x = torch.randn(5, HIDDEN)
    x[:, 0] = 1.0
    # Execute
    layer(x).pow(2).sum().backward()
    # Assert
    assert calls == [0, 1, 0, 0, 1, 0]
    for i, e in enumerate(layer.experts):
        grads = [e.lora_A.weight.grad, e.lora_B.weight.grad]
        if i in (1, 4):
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads)
    assert layer.router.weight.grad is not None


@pytest.mark.parametrize("n", [2, 12])
def test_expert_rows_total_tokens_times_k_whatever_n(n: int) -> None:
    # Sparse dispatch: the experts together see T*K rows, each chosen expert runs once.
    torch.manual_seed(n)
    layer = MoLELinear(nn.Linear(HIDDEN, HIDDEN), r=4, alpha=8, num_experts=n, top_k=2)
    rows: list[int] = []

    def count(_m: nn.Module, args: tuple, _out: torch.Tensor) -> None:
        rows.append(args[0].shape[0])

    for e in layer.experts:
        e.register_forward_hook(count)
    layer(torch.randn(3, 10, HIDDEN))
    assert sum(rows) == 3 * 10 * 2
    assert len(rows) <= n and all(r > 0 for r in rows)


def test_merge_folds_only_the_shared_expert() -> None:
    torch.manual_seed(0)
    layer = MoLELinear(nn.Linear(HIDDEN, HIDDEN), r=4, alpha=8, num_experts=3, top_k=1).eval()
    randomise(layer, 4)
    x = torch.randn(6, HIDDEN)
    before, w0 = layer(x), layer.base_layer.weight.clone()
    shared = layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
    layer.merge()
    assert torch.allclose(layer.base_layer.weight, w0 + shared, atol=1e-6)
    assert torch.allclose(layer(x), before, atol=1e-5)
    with pytest.raises(RuntimeError, match="merged"):
        set_adapter_state(layer, get_adapter_state(layer))
    layer.unmerge()
    assert torch.allclose(layer.base_layer.weight, w0, atol=1e-6)


@pytest.mark.parametrize(
    ("n", "k", "message"),
    [
        (1, 2, r"top_k=2 must satisfy 1 <= top_k <= num_experts=1"),
        (4, 0, "top_k=0"),
        (-1, 1, "num_experts"),
    ],
)
def test_bad_expert_counts_are_clear_errors(n: int, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MoLELinear(nn.Linear(4, 4), r=2, alpha=4, num_experts=n, top_k=k)


def test_load_balancing_loss_and_entropy_by_hand() -> None:
    # Uniform router, perfectly spread choices: N * sum(1/N * 1/N) = 1; entropy log N.
    logits = torch.zeros(4, 4)
    spread = torch.tensor([[0], [1], [2], [3]])
    assert load_balancing_loss(logits, spread).item() == pytest.approx(1.0)
    assert router_entropy(logits).item() == pytest.approx(math.log(4))
    # Collapse: every token picks expert 0 with p0 = e^3/(e^3+3); loss = N * 1 * p0.
    logits = torch.tensor([[3.0, 0, 0, 0]] * 4)
    p0 = math.exp(3) / (math.exp(3) + 3)
    assert load_balancing_loss(logits, torch.zeros(4, 1, dtype=torch.long)).item() == pytest.approx(
        4 * p0, rel=1e-5
    )


# ---------------------------------------------------------------- injection


def test_inject_mole_places_mole_and_lora_and_freezes_the_rest() -> None:
    torch.manual_seed(0)
    model = Tiny()
    mole, lora = inject_mole(model, ["up_proj"], ["q_proj", "v_proj"], r=2, alpha=4, num_experts=3)
    assert mole == ["layers.0.up_proj", "layers.1.up_proj"]
    assert lora == ["layers.0.q_proj", "layers.0.v_proj", "layers.1.q_proj", "layers.1.v_proj"]
    assert type(model.layers[1].up_proj) is MoLELinear
    assert type(model.layers[1].q_proj) is LoRALinear
    assert isinstance(model.layers[1].k_proj, nn.Linear)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(adapter_parameter_names(model))
    keys = set(get_adapter_state(model))
    assert "layers.0.up_proj.experts.2.lora_B.weight" in keys
    assert "layers.0.up_proj.router.weight" in keys
    assert "layers.0.up_proj.lora_A.weight" in keys  # the shared expert keeps LoRA's names


@pytest.mark.parametrize(
    ("mole_t", "lora_t", "message"),
    [
        (["up_proj"], ["up_proj"], "in both"),
        (["up_proj"], ["qq_proj"], "qq_proj"),
        ([], ["q_proj"], "mole_targets is empty"),
    ],
)
def test_inject_mole_errors_leave_the_model_untouched(mole_t, lora_t, message) -> None:
    model = Tiny()
    with pytest.raises(ValueError, match=message):
        inject_mole(model, mole_t, lora_t, r=2, alpha=4, num_experts=2)
    assert not adapter_parameter_names(model)


# ---------------------------------------------------------------- probe (Table 9)


def test_probe_paths_sum_to_the_layer_output_minus_base() -> None:
    torch.manual_seed(0)
    model = Tiny()
    inject_mole(model, ["up_proj"], ["q_proj"], r=2, alpha=4, num_experts=4, top_k=2)
    randomise(model, 6)
    layer = model.layers[1].up_proj
    seen = {}
    layer.register_forward_hook(lambda _m, args, out: seen.update(x=args[0], y=out))
    x = torch.randn(3, HIDDEN)
    paths = probe_layer(model, "layers.1.up_proj", lambda: model.eval()(x))
    assert set(paths) == {"shared", "routed"}
    expected = seen["y"] - layer.base_layer(seen["x"])
    assert torch.allclose(paths["shared"] + paths["routed"], expected, atol=1e-5)


def test_lora_layer_probe_has_one_path() -> None:
    model = Tiny()
    inject_lora(model, ["up_proj"], r=2, alpha=4)
    randomise(model, 1)
    paths = probe_layer(model, "layers.0.up_proj", lambda: model(torch.randn(2, HIDDEN)))
    assert list(paths) == ["lora"] and paths["lora"].shape == (2, 2 * HIDDEN)


def test_cross_client_cosine_by_hand() -> None:
    a = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])  # (batch 1, tokens 2, d 2)
    b = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    c = torch.tensor([[[1.0, 0.0], [-1.0, -1.0]]])
    # pairs (a,b): tokens 0, 1 -> mean 0.5; (a,c): 1, -1 -> 0; (b,c): 0, -1 -> -0.5
    assert cross_client_cosine({"a": a, "b": b, "c": c}, None) == pytest.approx(0.0, abs=1e-6)
    only_first = torch.tensor([[True, False]])
    # token 0 only: (a,b) 0, (a,c) 1, (b,c) 0 -> 1/3
    assert cross_client_cosine({"a": a, "b": b, "c": c}, only_first) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="two clients"):
        cross_client_cosine({"a": a}, None)
