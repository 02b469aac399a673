"""Tests of method=mole: ADA phases, what travels per variant, router health, the round loop."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedmllm.aggregators import FedAvg
from fedmllm.federation import FederationConfig, Simulator
from fedmllm.federation.config import Client
from fedmllm.lora import LoRALinear, MoLELinear, adapter_parameter_names
from fedmllm.methods import LoRAMethod, MoLEMethod

HIDDEN, VOCAB, SEQ = 16, 11, 6


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(HIDDEN, HIDDEN)
        self.k_proj = nn.Linear(HIDDEN, HIDDEN)
        self.v_proj = nn.Linear(HIDDEN, HIDDEN)
        self.up_proj = nn.Linear(HIDDEN, 2 * HIDDEN)
        self.down_proj = nn.Linear(2 * HIDDEN, HIDDEN)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.q_proj(h) * torch.sigmoid(self.k_proj(h)) + self.v_proj(h)
        return h + self.down_proj(torch.relu(self.up_proj(a)))


class ToyLM(nn.Module):
    """Embedding, two blocks, head; returns ``.loss`` like a Hugging Face model."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(HIDDEN, VOCAB)

    def forward(self, input_ids, labels=None, attention_mask=None):
        h = self.embed(input_ids)
        for block in self.layers:
            h = block(h)
        logits = self.head(h)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return SimpleNamespace(loss=loss, logits=logits)


def collate(samples: list[int]) -> dict[str, torch.Tensor]:
    """A sample is a seed; client-specific sequences make the task non-IID."""
    rows = [
        torch.randint(0, VOCAB, (SEQ,), generator=torch.Generator().manual_seed(s)) for s in samples
    ]
    ids = torch.stack(rows)
    return {
        "input_ids": ids,
        "labels": (ids * 3 + 1) % VOCAB,
        "attention_mask": torch.ones_like(ids),
    }


def toy_engine() -> SimpleNamespace:
    torch.manual_seed(0)
    return SimpleNamespace(model=ToyLM(), collator=collate, gen_collator=collate)


def make_mole(**kwargs) -> MoLEMethod:
    args = {"module_filter": None, "r": 2, "alpha": 4, "num_experts": 4, "top_k": 2, "dropout": 0.0}
    return MoLEMethod(toy_engine(), **{**args, **kwargs})


def randomise(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    names = set(adapter_parameter_names(model))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in names:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def fabric() -> L.Fabric:
    f = L.Fabric(accelerator="cpu", devices=1, precision="32-true")
    f.launch()
    return f


def batches(seed: int = 0):
    b = seed * 1000
    while True:
        yield collate(list(range(b, b + 4)))
        b += 4


def kind(key: str) -> str:
    """Group of a key by its name alone (independent of the method's own classifier)."""
    if ".up_proj.experts." in key:
        return "routed"
    if ".up_proj.router." in key:
        return "router"
    return "shared" if ".up_proj." in key else "lora"


def changed_kinds(method: MoLEMethod, **update) -> set[str]:
    randomise(method.model, 1)  # non-zero B everywhere, so every part has a gradient
    before = method.adapter_state()
    opt = method.configure_optimizers()
    method.local_update(fabric(), batches(), update.pop("steps", 4), opt, lambda _s: 1e-2)
    after = method.adapter_state()
    return {kind(k) for k in before if not torch.equal(before[k], after[k])}


# ---------------------------------------------------------------- ADA phases


def test_phase1_trains_only_routed_experts_and_routers() -> None:
    method = make_mole(phase1_fraction=1.0, weight_decay=0.1)
    assert changed_kinds(method) == {"routed", "router"}


def test_phase2_trains_only_shared_experts_and_plain_lora() -> None:
    method = make_mole(phase1_fraction=0.0, weight_decay=0.1)
    assert changed_kinds(method) == {"shared", "lora"}


def test_v1_trains_everything_jointly() -> None:
    assert changed_kinds(make_mole(ada=False)) == {"shared", "lora", "routed", "router"}


def test_every_adapter_is_trainable_again_after_a_local_update() -> None:
    method = make_mole()
    changed_kinds(method)
    groups = method.parameter_groups()
    assert set(groups.values()) == {"shared", "lora", "routed", "router"}
    assert all(p.requires_grad for n, p in method.model.named_parameters() if n in groups)


def test_phase_plan_splits_steps_and_gives_empty_phases_away() -> None:
    assert [(n, s) for n, _, s in make_mole().phase_plan(30)] == [("phase1", 15), ("phase2", 15)]
    assert [(n, s) for n, _, s in make_mole(phase1_fraction=0.2).phase_plan(10)] == [
        ("phase1", 2),
        ("phase2", 8),
    ]
    assert [(n, s) for n, _, s in make_mole(num_experts=0).phase_plan(10)] == [("phase2", 10)]
    assert [(n, s) for n, _, s in make_mole(ada=False).phase_plan(10)] == [("joint", 10)]


def test_local_update_reports_router_health() -> None:
    method = make_mole(num_experts=4, balance_loss_coef=0.01)
    metrics = method.local_update(
        fabric(), batches(), 4, method.configure_optimizers(), lambda _s: 1e-3
    )
    load = [metrics[f"hist/expert_load/{i}"] for i in range(4)]
    assert sum(load) == pytest.approx(1.0)
    assert 0.0 <= metrics["router_entropy"] <= math.log(4) + 1e-6
    assert metrics["balance_loss"] >= 1.0 - 1e-6  # the Switch loss is at least 1
    assert {"loss_phase1", "loss_phase2"} <= set(metrics)
    assert "balance_loss" not in make_mole().local_update(
        fabric(), batches(), 2, make_mole().configure_optimizers(), lambda _s: 1e-3
    )


def test_balance_loss_alone_moves_the_router() -> None:
    # With routed B = 0 the task loss gives the routers no gradient; only the aux loss can.
    def router_moved(coef: float) -> bool:
        method = make_mole(phase1_fraction=1.0, balance_loss_coef=coef)
        before = {k: v for k, v in method.adapter_state().items() if ".router." in k}
        method.local_update(fabric(), batches(), 1, method.configure_optimizers(), lambda _s: 1e-2)
        after = method.adapter_state()
        return any(not torch.equal(before[k], after[k]) for k in before)

    assert not router_moved(0.0)
    assert router_moved(1.0)


def test_k_above_n_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="top_k=3 must satisfy 1 <= top_k <= num_experts=2"):
        make_mole(num_experts=2, top_k=3)
    with pytest.raises(ValueError, match="method.share"):
        make_mole(share="some")


# ---------------------------------------------------------------- what travels


def _one_round(method, aggregator=None) -> Simulator:
    clients = [Client(f"c{k}", "vqa", list(range(100 * k, 100 * k + 12)), []) for k in range(3)]
    cfg = FederationConfig(rounds=1, local_steps=2, batch_size=4, checkpoint=False, eval_every=0)
    sim = Simulator(
        fabric(), method.engine, method, aggregator or FedAvg(), clients, cfg, "unused", []
    )
    sim.run_round()
    return sim


def _lora_bytes(model: nn.Module) -> int:
    """r * (in + out) * 4 bytes per adapted module, from the layers' shapes."""
    return sum(
        m.r * (m.in_features + m.out_features) * 4
        for m in model.modules()
        if isinstance(m, LoRALinear)
    )


@pytest.mark.parametrize(
    ("share", "sent"),
    [
        ("shared", {"shared", "lora"}),
        ("all", {"shared", "lora", "routed", "router"}),
        ("none", set()),
        ("shared_router", {"shared", "lora", "router"}),
    ],
)
def test_each_variant_sends_what_it_should(share: str, sent: set[str]) -> None:
    method = make_mole(share=share)
    sim = _one_round(method)
    every = set(method.adapter_state())
    for update in sim.last_updates:
        assert set(update.state) == {k for k in every if kind(k) in sent}
        assert {kind(k) for k in sim.store.get(update.client_id)[0]} == (
            {"shared", "lora", "routed", "router"} - sent
        )


def test_mole_update_bytes_equal_fedavg_bytes_for_same_targets_and_rank() -> None:
    # Prepare
    mole = make_mole(mole_targets=["up_proj"], lora_targets=["q_proj", "v_proj"], num_experts=8)
    fedavg = LoRAMethod(
        toy_engine(), ["q_proj", "v_proj", "up_proj"], module_filter=None, r=2, alpha=4
    )
    # Execute
    mole_sim, fedavg_sim = _one_round(mole), _one_round(fedavg)
    # Assert: identical keys and bytes; both equal the independent count
    expected = _lora_bytes(fedavg.model)
    assert _lora_bytes(mole.model) == expected  # MoLELinear's shared expert is LoRA-shaped
    assert (
        mole_sim.comm == fedavg_sim.comm == {"up_bytes": 3 * expected, "down_bytes": 3 * expected}
    )
    assert set(mole_sim.global_state) == set(fedavg_sim.global_state)


def test_swap_in_loads_a_clients_pre_aggregation_model() -> None:
    method = make_mole()
    sim = _one_round(method)
    update = sim.last_updates[1]
    sim.swap_in(update.client_id, update.state)
    now = method.adapter_state()
    for k, v in update.state.items():
        assert torch.equal(now[k], v)
    for k, v in sim.store.get(update.client_id)[0].items():
        assert torch.equal(now[k], v)
    sim.swap_in(update.client_id)  # default: the aggregated global shared state
    assert all(torch.equal(method.adapter_state()[k], v) for k, v in sim.global_state.items())
    assert any(not torch.equal(sim.global_state[k], v) for k, v in update.state.items())


def test_probe_paths_of_mole_and_lora_methods() -> None:
    batch = collate([1, 2])
    paths = make_mole().probe_paths(batch)
    assert set(paths) == {"shared", "routed"} and paths["shared"].shape == (2, SEQ, 2 * HIDDEN)
    lora = LoRAMethod(toy_engine(), ["q_proj", "up_proj"], module_filter=None, r=2, alpha=4)
    assert list(lora.probe_paths(batch)) == ["lora"]
    assert isinstance(make_mole().model.layers[1].up_proj, MoLELinear)
