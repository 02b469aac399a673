"""``method.gating``: the two readings of Fed-MoLE's Eq. (7), checked against hand computations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import fedmllm
from fedmllm.lora import MoLELinear, TopKRouter, inject_mole
from fedmllm.lora.router import gate


def _exp_weights(logits: list[float], chosen: list[int], over: list[int]) -> list[float]:
    """``exp(z_i) / Σ_{j∈over} exp(z_j)`` for i in ``chosen``, with math.exp (not torch)."""
    total = sum(math.exp(logits[j]) for j in over)
    return [math.exp(logits[i]) / total for i in chosen]


def test_both_gatings_by_hand_on_four_logits() -> None:
    z = [1.0, 2.0, 3.0, 0.0]
    logits = torch.tensor([z], dtype=torch.float64)
    renorm = gate(logits, 2, "topk_softmax")
    full = gate(logits, 2, "softmax_topk")
    # Both choose experts 2 then 1 (logits 3 and 2).
    assert renorm.indices.tolist() == [[2, 1]] == full.indices.tolist()
    # topk_softmax: e^3 / (e^3 + e^2) = 0.7311, e^2 / (e^3 + e^2) = 0.2689; sums to one.
    expected = _exp_weights(z, [2, 1], [2, 1])
    assert renorm.weights[0].tolist() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx([0.7310585786, 0.2689414214], rel=1e-9)
    # softmax_topk: denominators over all four: e^3 / 31.1929 = 0.6439, e^2 / 31.1929 = 0.2369.
    expected = _exp_weights(z, [2, 1], [0, 1, 2, 3])
    assert full.weights[0].tolist() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx([0.6439142599, 0.2368828181], rel=1e-9)
    assert float(full.weights.sum()) < 1.0


def test_gatings_agree_when_k_equals_n() -> None:
    logits = torch.tensor([[0.5, -1.0, 2.0]])
    a, b = gate(logits, 3, "topk_softmax"), gate(logits, 3, "softmax_topk")
    torch.testing.assert_close(a.weights, b.weights)


def test_router_passes_its_gating_on() -> None:
    router = TopKRouter(in_features=3, num_experts=3, top_k=1, gating="softmax_topk")
    with torch.no_grad():
        router.weight.copy_(torch.eye(3))
    routing = router(torch.tensor([[1.0, 3.0, 2.0]]))
    assert routing.indices.tolist() == [[1]]
    e = math.e
    assert routing.weights.item() == pytest.approx(e**3 / (e + e**3 + e**2), rel=1e-6)


def test_mole_layer_output_with_softmax_topk_by_hand() -> None:
    # One routed expert of two chosen (K = 1), the shared expert off (B^s = 0): the layer adds
    # p_1 · s · B_1 A_1 x with p_1 = e^{z_1} / (e^{z_0} + e^{z_1}) under softmax_topk, 1 otherwise.
    torch.manual_seed(0)
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    outs = {}
    for gating in ("topk_softmax", "softmax_topk"):
        base = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            base.weight.zero_()
        layer = MoLELinear(base, r=1, alpha=2, num_experts=2, top_k=1, gating=gating)
        with torch.no_grad():
            layer.router.weight.copy_(
                torch.tensor([[0.5, 0, 0, 0], [1.5, 0, 0, 0]])
            )  # z = (0.5, 1.5)
            for e in layer.experts:
                e.lora_A.weight.copy_(torch.tensor([[2.0, 0, 0, 0]]))
                e.lora_B.weight.copy_(torch.tensor([[1.0], [3.0]]))
        outs[gating] = layer.eval()(x)
    # s = alpha / r = 2; B_1 A_1 x = [2, 6]; so s · B_1 A_1 x = [4, 12].
    torch.testing.assert_close(outs["topk_softmax"], torch.tensor([[4.0, 12.0]]))
    p1 = math.exp(1.5) / (math.exp(0.5) + math.exp(1.5))
    torch.testing.assert_close(outs["softmax_topk"], torch.tensor([[4.0 * p1, 12.0 * p1]]))


def test_inject_mole_hands_the_gating_to_every_router() -> None:
    model = nn.Sequential()
    model.add_module("up_proj", nn.Linear(4, 4))
    inject_mole(model, ["up_proj"], [], r=2, alpha=4, num_experts=3, top_k=2, gating="softmax_topk")
    assert model.up_proj.router.gating == "softmax_topk"


def test_bad_gating_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="method.gating must be one of"):
        MoLELinear(nn.Linear(4, 4), r=2, alpha=4, num_experts=2, top_k=1, gating="sparsemax")


def test_mole_config_keeps_topk_softmax_as_default() -> None:
    cfg = Path(fedmllm.__file__).parent / "configs" / "method" / "mole.yaml"
    assert yaml.safe_load(cfg.read_text())["gating"] == "topk_softmax"
