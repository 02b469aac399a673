"""FedEx-LoRA and FRLoRA: the dense base-weight deltas and their invariants, on nn.Linear."""

import math

import pytest
import torch
from torch import nn

from fedmllm.aggregators import FedExLoRA, FRLoRA
from fedmllm.types import ClientUpdate

D_OUT, D_IN, R = 5, 8, 3
PREFIX = "model.layers.0.self_attn.q_proj."
KA, KB, KX = PREFIX + "lora_A.weight", PREFIX + "lora_B.weight", "model.gate.weight"
BASE = PREFIX + "base_layer.weight"


def _clients(seed: int, counts=(2, 6, 12), rank: int = R, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [
        ClientUpdate(
            f"c{i}",
            {
                KA: torch.randn(rank, D_IN, generator=g, dtype=dtype),
                KB: torch.randn(D_OUT, rank, generator=g, dtype=dtype),
                KX: torch.randn(2, 3, generator=g, dtype=dtype),
            },
            n,
        )
        for i, n in enumerate(counts)
    ]


def _w(counts):
    return [n / sum(counts) for n in counts]


def _f64(t):
    return t.to(torch.float64)


@pytest.mark.parametrize("rslora", [False, True])
def test_fedex_folds_the_exact_residual_into_an_nn_linear_weight(rslora):
    ups = _clients(0)
    agg = FedExLoRA(alpha=8.0, use_rslora=rslora)
    out = agg.aggregate({}, ups, 0)
    s = 8.0 / (math.sqrt(R) if rslora else R)
    w = _w((2, 6, 12))
    a_bar = sum(wk * _f64(u.state[KA]) for wk, u in zip(w, ups, strict=True))
    b_bar = sum(wk * _f64(u.state[KB]) for wk, u in zip(w, ups, strict=True))
    mean_prod = sum(
        wk * _f64(u.state[KB]) @ _f64(u.state[KA]) for wk, u in zip(w, ups, strict=True)
    )
    torch.testing.assert_close(out[KA], a_bar.float())
    torch.testing.assert_close(out[KB], b_bar.float())
    torch.testing.assert_close(out[KX], sum(wk * u.state[KX] for wk, u in zip(w, ups, strict=True)))
    deltas = agg.base_weight_updates()
    assert set(deltas) == {BASE} and deltas[BASE].dtype == torch.float32
    # Apply to a real nn.Linear (weight is d_out × d_in) and check the FedEx invariant.
    layer = nn.Linear(D_IN, D_OUT, bias=False)
    w0 = layer.weight.detach().clone().double()
    with torch.no_grad():
        layer.weight += deltas[BASE]
    lhs = layer.weight.detach().double() + s * _f64(out[KB]) @ _f64(out[KA])
    torch.testing.assert_close(lhs, w0 + s * mean_prod, rtol=1e-5, atol=1e-5)
    # The residual is not zero here (so the check above is not vacuous).
    assert deltas[BASE].abs().max() > 1e-2


def test_fedex_invariant_to_float64_precision_and_uniform_weighting():
    ups = _clients(1, dtype=torch.float64)
    agg = FedExLoRA(weighting="uniform", alpha=4.0)
    out = agg.aggregate({}, ups, 0)
    s = 4.0 / R
    mean_prod = sum(u.state[KB] @ u.state[KA] for u in ups) / 3
    # The float32 delta carries float32 rounding; the invariant holds to that precision.
    lhs = _f64(agg.base_weight_updates()[BASE]) + s * out[KB] @ out[KA]
    torch.testing.assert_close(lhs, s * mean_prod, rtol=1e-6, atol=1e-6)


def test_fedex_refuses_mixed_ranks_and_clears_deltas_on_an_empty_round():
    ups = _clients(2)[:1] + _clients(3, counts=(4,), rank=R + 1)
    with pytest.raises(ValueError, match=r"fedex.*\[3, 4\]"):
        FedExLoRA().aggregate({}, ups, 0)
    agg = FedExLoRA()
    agg.aggregate({}, _clients(4), 0)
    assert agg.base_weight_updates()
    glob = {KA: torch.ones(R, D_IN)}
    assert agg.aggregate(glob, [], 1) == glob and agg.base_weight_updates() == {}


def test_frlora_refreshes_the_base_and_restarts_from_the_first_global_adapter():
    g = torch.Generator().manual_seed(5)
    a0, b0 = torch.randn(R, D_IN, generator=g), torch.randn(D_OUT, R, generator=g)
    glob = {KA: a0.clone(), KB: b0.clone(), KX: torch.zeros(2, 3)}
    agg = FRLoRA(alpha=6.0)
    ups = _clients(6)
    out = agg.aggregate(glob, ups, 0)
    s = 6.0 / R
    w = _w((2, 6, 12))
    a_bar = sum(wk * _f64(u.state[KA]) for wk, u in zip(w, ups, strict=True))
    b_bar = sum(wk * _f64(u.state[KB]) for wk, u in zip(w, ups, strict=True))
    assert torch.equal(out[KA], a0) and torch.equal(out[KB], b0)
    torch.testing.assert_close(out[KX], sum(wk * u.state[KX] for wk, u in zip(w, ups, strict=True)))
    delta = agg.base_weight_updates()[BASE]
    expected = s * (b_bar @ a_bar - _f64(b0) @ _f64(a0))
    torch.testing.assert_close(_f64(delta), expected, rtol=1e-6, atol=1e-6)
    # Model after the round = W_base + s·B̄Ā, although the adapter is back at (A0, B0).
    w_base = torch.randn(D_OUT, D_IN, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        w_base + _f64(delta) + s * _f64(b0) @ _f64(a0),
        w_base + s * b_bar @ a_bar,
        rtol=1e-6,
        atol=1e-6,
    )
    # Round 2: the reset target stays the captured (A0, B0), whatever global is handed in.
    out2 = agg.aggregate({KA: torch.zeros(R, D_IN), KB: torch.zeros(D_OUT, R), KX: out[KX]}, ups, 1)
    assert torch.equal(out2[KA], a0) and torch.equal(out2[KB], b0)


def test_frlora_checkpoint_carries_the_initial_adapter():
    g = torch.Generator().manual_seed(7)
    glob = {
        KA: torch.randn(R, D_IN, generator=g),
        KB: torch.randn(D_OUT, R, generator=g),
        KX: torch.zeros(2, 3),
    }
    first = FRLoRA()
    first.aggregate(glob, _clients(8), 0)
    resumed = FRLoRA()
    resumed.load_state_dict(first.state_dict())
    out = resumed.aggregate({k: torch.zeros_like(v) for k, v in glob.items()}, _clients(9), 1)
    assert torch.equal(out[KA], glob[KA]) and torch.equal(out[KB], glob[KB])
    with pytest.raises(KeyError, match="init_state"):
        FRLoRA().load_state_dict({"a0": 1})
    with pytest.raises(KeyError, match="A0, B0"):
        FRLoRA().aggregate({}, _clients(10), 0)
