"""FedMRG: its loss by hand, its low-rank exchange against a dense SVD, its prompts, and what
leaves the client (the specialised adapter and its gate never do)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fedmllm.build import build_components, make_simulator
from fedmllm.methods.fedmrg import FedMRGMethod
from fedmllm.methods.fedmrg_parts import (
    client_aware_contrastive,
    diagnosis_class,
    diagnosis_text,
    insert_tokens,
    truncated_factors,
)


def test_client_aware_contrastive_by_hand():
    # g (first half) already unit: g1=(1,0), g2=(0,1), g3=(0.6,0.8); s (second half) below.
    z = torch.tensor(
        [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.6, 0.8, 0.0, 1.0]], dtype=torch.float64
    )
    classes = torch.tensor([0, 0, 1])
    protos = torch.zeros(8, 2, dtype=torch.float64)
    protos[0], protos[1] = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    tau, beta = 0.5, 0.1
    # L_sup: anchors 1 and 2 are each other's positive; g1·g2 = 0, g1·g3 = 0.6, g2·g3 = 0.8.
    sup = (math.log(1 + math.exp(1.2)) + math.log(1 + math.exp(1.6))) / 2
    # L_proto over the known prototypes (1,0) and (0,1): logits g·c/τ.
    proto = (
        -math.log(math.exp(2) / (math.exp(2) + 1))
        - math.log(1 / (1 + math.exp(2)))
        - math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))
    ) / 3
    # L_site: s = (1,0), (1,0), (0,1); mean (2/3, 1/3); cosines 2/√5, 2/√5, 1/√5.
    site = ((1 - 2 / math.sqrt(5)) * 2 + (1 - 1 / math.sqrt(5))) / 3
    got = client_aware_contrastive(z, classes, protos, tau, beta)
    assert float(got) == pytest.approx(sup + proto + beta * site, rel=1e-9)
    # No prototypes known and no site term: the supervised part alone.
    alone = client_aware_contrastive(z, classes, torch.zeros(8, 2, dtype=torch.float64), tau, 0.0)
    assert float(alone) == pytest.approx(sup, rel=1e-9)


def test_diagnosis_class_and_text():
    kinds = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    assert diagnosis_class(kinds).tolist() == [1, 6, 0]
    labels = torch.tensor([[1, 1, 0, 2], [0, 0, 0, 0], [0, 0, 1, 1]])
    assert diagnosis_text(labels) == [
        "two lesions: cyst, tumor.",
        "zero lesions.",
        "one lesion: calcification.",
    ]


def test_truncated_factors_match_the_dense_svd():
    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(6, 10, generator=g, dtype=torch.float64),
        torch.randn(7, 6, generator=g, dtype=torch.float64),
    )
    u, s, vh = torch.linalg.svd(b @ a)
    for k in (1, 3, 6):
        a_k, b_k = truncated_factors(a, b, k)
        assert a_k.shape == (k, 10) and b_k.shape == (7, k)
        best = u[:, :k] @ torch.diag(s[:k]) @ vh[:k]  # Eckart–Young
        torch.testing.assert_close(b_k @ a_k, best)


def test_insert_tokens_before_the_answer_and_at_the_end_of_prompts():
    train = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 0], [5, 7, 8, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]),
        "labels": torch.tensor([[-100, -100, 7, 8, -100], [-100, 7, 8, -100, -100]]),
    }
    out = insert_tokens(train, [[1, 2], [3]], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 1, 2, 7, 8], [5, 3, 7, 8, 0, 0]]
    assert out["labels"].tolist() == [
        [-100, -100, -100, -100, 7, 8],
        [-100, -100, 7, 8, -100, -100],
    ]
    assert out["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
    gen = {
        "input_ids": torch.tensor([[0, 5, 6], [5, 6, 7]]),
        "attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
    }
    out = insert_tokens(gen, [[1], [3]], pad_id=0)  # prompts end where generation starts
    assert out["input_ids"].tolist() == [[0, 5, 6, 1], [5, 6, 7, 3]]
    assert out["attention_mask"].tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]


def _round(make_cfg, experiment: str, *overrides: str):
    cfg = make_cfg(experiment, "threads=1", "logger=none", *overrides)
    c = build_components(cfg)
    sim, _ = make_simulator(cfg, c, Path(cfg.paths.output_dir))
    return c, sim


def test_private_adapter_never_leaves_and_the_exchange_is_low_rank(make_cfg):
    c, sim = _round(make_cfg, "mrg_fedmrg")
    method: FedMRGMethod = c.method
    assert isinstance(method, FedMRGMethod)
    sim.run_round()
    for update in sim.last_updates:
        keys = set(update.state)
        assert not any("local_lora_" in k or "mix_logit" in k for k in keys)
        assert any("fedmrg_head.head" in k for k in keys)  # the head travels
        assert any("vision_tower" in k for k in keys) and any("language_model" in k for k in keys)
        for k, t in update.state.items():  # every exchanged pair at rank 4 (of r = 8)
            if k.endswith("lora_A.weight"):
                assert t.shape[0] == method.exchange_rank < method.r
            if k.endswith("lora_B.weight"):
                assert t.shape[1] == method.exchange_rank
        private, _ = sim.store.get(update.client_id)
        assert any("local_lora_B" in k and t.abs().sum() > 0 for k, t in private.items())
        assert any(k.endswith("mix_logit") for k in private)
    # bytes on the wire, from layer shapes: every exchanged pair at rank k, plus the head
    k = method.exchange_rank
    pairs = sum(k * (m.in_features + m.out_features) * 4 for m in method._exchanged_layers())
    head = method.head
    head_bytes = 4 * (head.head.weight.numel() + head.head.bias.numel() + head.prototypes.numel())
    for update in sim.last_updates:
        assert (
            sum(t.numel() * t.element_size() for t in update.state.values()) == pairs + head_bytes
        )
    # what the server sends back holds no private tensor either
    assert not any("local_lora_" in k or "mix_logit" in k for k in sim.global_state)


@torch.no_grad()
def test_topping_up_keeps_the_product_and_compressing_is_the_best_rank_k(make_cfg):
    c, _ = _round(make_cfg, "mrg_fedmrg")
    m: FedMRGMethod = c.method
    g = torch.Generator().manual_seed(1)
    for layer in m._exchanged_layers():
        layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g))
    m.end_local()  # compress to rank 4
    layer = m._exchanged_layers()[0]
    product = layer.lora_B.weight @ layer.lora_A.weight
    dense = layer.lora_B.weight.double() @ layer.lora_A.weight.double()
    assert torch.linalg.matrix_rank(dense) <= m.exchange_rank
    m.begin_local(2)  # fresh directions beyond rank 4, zero B columns: product unchanged
    assert layer.lora_A.weight[m.exchange_rank :].abs().sum() > 0
    torch.testing.assert_close(layer.lora_B.weight @ layer.lora_A.weight, product)


def test_ablation_switches_change_what_is_built(make_cfg):
    c, sim = _round(make_cfg, "mrg_fedmrg_no_dual")
    state = c.method.adapter_state()
    assert not any("local_lora_" in k for k in state)
    c, sim = _round(make_cfg, "mrg_fedmrg_no_lowrank")
    sim.run_round()
    ranks = {
        t.shape[0]
        for u in sim.last_updates
        for k, t in u.state.items()
        if k.endswith("lora_A.weight")
    }
    assert ranks == {c.method.r}
