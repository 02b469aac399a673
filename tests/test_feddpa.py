"""FedDPA-LoRA: the similarity weights, per-row mixing inside the forward, the two phases,
and that instance-wise mixing really changes what the real tiny model generates."""

from __future__ import annotations

import math

import pytest
import torch
from toy_engine import FakeFabric, lora_kwargs, toy_batches, toy_engine

from fedmllm.build import build_components
from fedmllm.lora.dual import DualLoRALinear
from fedmllm.methods import FedDPAMethod
from fedmllm.methods.feddpa import REPS_KEY, instance_weights


def test_instance_weights_by_hand():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    w = instance_weights(q, memory, top_k=1, fallback=0.5)
    # nearest cosine: 1, 1/sqrt(2), 0 (clipped from 0 and -1) -> w = 1 − sim
    torch.testing.assert_close(w, torch.tensor([0.0, 1 - 1 / math.sqrt(2), 1.0]))
    w2 = instance_weights(q[:1], memory, top_k=2, fallback=0.5)  # mean of (1, 0)
    torch.testing.assert_close(w2, torch.tensor([0.5]))
    assert torch.equal(instance_weights(q, memory[:0], 5, 0.3), torch.full((3,), 0.3))


def test_dual_layer_mixes_each_row_with_its_own_weight():
    torch.manual_seed(0)
    layer = DualLoRALinear(torch.nn.Linear(4, 3), r=2, alpha=2.0)
    with torch.no_grad():
        for p in (layer.lora_B.weight, layer.local_lora_B.weight):
            p.copy_(torch.randn_like(p))
    x = torch.randn(2, 5, 4)  # (batch, tokens, features)
    g = x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    loc = x @ layer.local_lora_A.weight.T @ layer.local_lora_B.weight.T
    layer.mix = torch.tensor([0.2, 0.9])
    expected = layer.base_layer(x) + 1.0 * torch.stack(
        [0.2 * g[0] + 0.8 * loc[0], 0.9 * g[1] + 0.1 * loc[1]]
    )
    torch.testing.assert_close(layer(x), expected)
    layer.mix = torch.tensor([0.2, 0.9, 0.5])
    with pytest.raises(ValueError, match="rows"):
        layer(x)


def test_feddpa_trains_local_then_global_and_shares_only_global():
    m = FedDPAMethod(toy_engine(), local_fraction=0.5, **lora_kwargs())
    state = m.adapter_state()
    assert m.shared_keys(state) == sorted(
        k for k in state if k.endswith(("lora_A.weight", "lora_B.weight")) and "local_" not in k
    )
    assert REPS_KEY in m.private_keys(state) and any(
        "local_lora" in k for k in m.private_keys(state)
    )
    opt = m.configure_optimizers()
    before = m.adapter_state()
    m.local_update(FakeFabric(), toy_batches(0), 1, opt, lambda i: 0.05)  # round(0.5) = 0 local
    mid = m.adapter_state()
    moved = {k for k in before if k != REPS_KEY and not torch.equal(before[k], mid[k])}
    assert moved and all("local_" not in k for k in moved)  # one step: global phase only
    m.local_update(FakeFabric(), toy_batches(1), 4, opt, lambda i: 0.05)  # 2 local + 2 global
    after = m.adapter_state()
    assert any("local_lora_B" in k and not torch.equal(mid[k], after[k]) for k in after)
    assert after[REPS_KEY].shape == (5 * 4, m._reps.shape[1])  # 5 batches of 4 remembered


def test_instance_wise_mixing_acts_inside_generation(make_cfg):
    c = build_components(make_cfg("fedmed_feddpa"))
    method = c.method
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # make the two adapters strong and different
        for name, p in method.model.named_parameters():
            if "lora_" in name:
                p.copy_(2.0 * torch.randn(p.shape, generator=g))
    samples = [c.eval_clients[0].test[0], c.eval_clients[1].test[0]]
    batch = c.engine.gen_collator(samples)
    only_local = method.generate_with_mix(batch, 6, 0.0)
    only_global = method.generate_with_mix(batch, 6, 1.0)
    assert only_local[0] != only_global[0] and only_local[1] != only_global[1]
    mixed = method.generate_with_mix(batch, 6, torch.tensor([0.0, 1.0]))
    assert mixed == [only_local[0], only_global[1]]  # each row got its own weight
    flipped = method.generate_with_mix(batch, 6, torch.tensor([1.0, 0.0]))
    assert flipped == [only_global[0], only_local[1]]
