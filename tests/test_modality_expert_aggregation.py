"""Expert-aware aggregation: on small tensors, and after a real round of modality experts."""

from __future__ import annotations

import pytest
import torch
from multimodal_helpers import cpu_fabric, make_samples, tiny_engine

from fedmllm.aggregators import NoAggregation
from fedmllm.aggregators.expert_aware import ExpertAware
from fedmllm.federation import Client, FederationConfig, Simulator
from fedmllm.federation.sampling import batch_indices
from fedmllm.lora.modality_expert import ModalityExpertLinear, expert_modality
from fedmllm.methods.lora_module import LoRAMethod
from fedmllm.methods.modality_expert_module import ModalityExpertMethod
from fedmllm.types import ClientUpdate

CT, MRI, XR = (
    "l.experts.ct.lora_A.weight",
    "l.experts.mri.lora_A.weight",
    "l.experts.xray.lora_A.weight",
)
SH = "l.shared.lora_A.weight"


def _t(v: float) -> torch.Tensor:
    return torch.full((2, 3), v)


def _updates() -> list[ClientUpdate]:
    return [
        ClientUpdate("a", {CT: _t(1.0), SH: _t(10.0)}, 300, {"modality_frac/ct": 1.0}),
        ClientUpdate(
            "b",
            {CT: _t(2.0), MRI: _t(4.0), SH: _t(20.0)},
            100,
            {"modality_frac/ct": 0.25, "modality_frac/mri": 0.75},
        ),
        ClientUpdate("c", {MRI: _t(8.0), SH: _t(40.0)}, 50, {"modality_frac/mri": 1.0}),
    ]


def test_each_expert_is_the_mean_over_its_holders_weighted_by_their_samples_of_it():
    glob = {CT: _t(0.0), MRI: _t(0.0), XR: _t(-7.0), SH: _t(0.0)}
    out = ExpertAware().aggregate(glob, _updates(), 0)
    # ct: a holds 300 ct samples, b 25; mri: b 75, c 50; shared: every client by n_k.
    assert torch.allclose(out[CT], _t((300 * 1.0 + 25 * 2.0) / 325))
    assert torch.allclose(out[MRI], _t((75 * 4.0 + 50 * 8.0) / 125))
    assert torch.allclose(out[SH], _t((300 * 10 + 100 * 20 + 50 * 40) / 450))
    assert torch.equal(out[XR], _t(-7.0))  # nobody trained x-ray: the server keeps it
    uniform = ExpertAware(weighting="uniform").aggregate(glob, _updates(), 0)
    assert torch.allclose(uniform[CT], _t(1.5)) and torch.allclose(uniform[MRI], _t(6.0))
    assert torch.allclose(uniform[SH], _t(70.0 / 3))
    assert ExpertAware().aggregate(glob, [], 0) == glob


def test_an_expert_without_its_fraction_or_an_unknown_key_is_refused():
    good = ClientUpdate("b", {CT: _t(3.0)}, 10, {"modality_frac/ct": 1.0})
    bad = ClientUpdate("a", {CT: _t(1.0)}, 10, {"loss": 1.0})
    with pytest.raises(KeyError, match="modality_frac/ct"):
        ExpertAware().aggregate({CT: _t(0.0)}, [good, bad], 0)
    with pytest.raises(KeyError, match="global state lacks"):
        ExpertAware().aggregate({SH: _t(0.0)}, _updates()[:1], 0)


def test_experts_no_sender_reports_a_modality_for_are_averaged_by_samples():
    # Fed-MoLE M1 sends its routed experts ``experts.<i>``: no modality, so weights n_k.
    routed = "layers.0.mlp.up_proj.experts.0.lora_A.weight"
    ups = [ClientUpdate("a", {routed: _t(1.0)}, 30), ClientUpdate("b", {routed: _t(5.0)}, 10)]
    out = ExpertAware().aggregate({routed: _t(0.0)}, ups, 0)
    assert torch.allclose(out[routed], _t((30 * 1.0 + 10 * 5.0) / 40))


class Recording(ExpertAware):
    """Keeps the updates it was given."""

    def aggregate(self, global_state, updates, round_idx):
        self.updates = list(updates)
        return super().aggregate(global_state, updates, round_idx)


def _expert_bytes(model: torch.nn.Module) -> int:
    """Bytes of one expert summed over all expert layers, from the layers' shapes."""
    return sum(
        m.r * (m.in_features + m.out_features) * 4
        for m in model.modules()
        if isinstance(m, ModalityExpertLinear)
    )


def test_a_round_of_modality_experts_averages_each_expert_over_exactly_its_holders(tmp_path):
    engine = tiny_engine(tmp_path)
    method = ModalityExpertMethod(
        engine, ["ct", "mri", "xray"], ["q_proj", "v_proj"], r=2, alpha=4, dropout=0.0
    )
    clients = [
        Client("ct_a", "vqa", make_samples("ct", 6, seed=1), make_samples("ct", 2, seed=9)),
        Client("mix", "vqa", make_samples("ct", 3, 2) + make_samples("mri", 5, 3), []),
        Client("mri", "vqa", make_samples("mri", 4, seed=4), make_samples("mri", 2, seed=8)),
    ]
    cfg = FederationConfig(rounds=1, local_steps=3, batch_size=4, lr=0.01, eval_every=0)
    agg = Recording()
    sim = Simulator(cpu_fabric(), engine, method, agg, clients, cfg, tmp_path / "run")
    sim.run_round()
    ups = {u.client_id: u for u in agg.updates}
    sent = {cid: {expert_modality(k) for k in u.state} for cid, u in ups.items()}
    assert sent == {"ct_a": {"ct"}, "mix": {"ct", "mri"}, "mri": {"mri"}}

    # The mix client's ct share, recomputed from the batch stream (not from the method).
    idx = [i for b in range(3) for i in batch_indices(8, 4, b, cfg.seed, 1)]
    f_ct = sum(i < 3 for i in idx) / len(idx)
    assert ups["mix"].metrics["modality_frac/ct"] == pytest.approx(f_ct)
    w = {"ct": {"ct_a": 6.0, "mix": 8 * f_ct}, "mri": {"mix": 8 * (1 - f_ct), "mri": 4.0}}
    for key, value in sim.global_state.items():
        m = expert_modality(key)
        if m == "xray":  # held by nobody: still the initial value
            assert torch.equal(value, sim.initial_state[key])
            continue
        expected = sum(wk * ups[c].state[key] for c, wk in w[m].items()) / sum(w[m].values())
        torch.testing.assert_close(value, expected)
        assert not torch.equal(value, sim.initial_state[key]) or "lora_A" in key

    one = _expert_bytes(engine.model)  # bytes of one modality's expert over all layers
    assert sim.comm["up_bytes"] == 4 * one  # ct_a: ct, mix: ct + mri, mri: mri
    assert sim.comm["down_bytes"] == 4 * one  # each client received only what it trains


def _rounds(sim: Simulator, n: int) -> None:
    for _ in range(n):
        sim.run_round()
        sim.round += 1


def test_with_one_client_per_modality_each_expert_trains_exactly_like_standalone_lora(tmp_path):
    """The reference: plain LoRA trained alone from the expert's initial value.

    Each expert has one holder, so expert-aware averaging returns that client's tensor and the
    expert follows the same trajectory as that client's Standalone LoRA (to float rounding).
    """
    cfg = FederationConfig(rounds=2, local_steps=3, batch_size=3, lr=0.02, eval_every=0)
    clients = [
        Client("ct", "vqa", make_samples("ct", 6, seed=1), []),
        Client("mri", "vqa", make_samples("mri", 6, seed=2), []),
    ]
    targets = {"target_modules": ["q_proj", "v_proj"], "r": 2, "alpha": 4, "dropout": 0.0}
    me = ModalityExpertMethod(tiny_engine(tmp_path / "me"), ["ct", "mri"], **targets)
    sim = Simulator(cpu_fabric(), me.engine, me, ExpertAware(), clients, cfg, tmp_path / "a")
    _rounds(sim, 2)
    for m in ("ct", "mri"):
        alone = LoRAMethod(tiny_engine(tmp_path / m), share="none", **targets)
        tag = f".experts.{m}."
        as_lora = {k.replace(tag, "."): v for k, v in sim.initial_state.items() if tag in k}
        alone.load_adapter_state(as_lora)  # start from the expert's initial value
        ref = Simulator(
            cpu_fabric(), alone.engine, alone, NoAggregation(), clients, cfg, tmp_path / m
        )
        _rounds(ref, 2)
        private = ref.store.get(m)[0]
        assert private and set(private) == set(as_lora)
        for key, value in private.items():
            expert = sim.global_state[key.replace(".lora_", f"{tag}lora_")]
            torch.testing.assert_close(expert, value, rtol=1e-6, atol=1e-8)  # bit-equal on CPU
            assert not torch.equal(value, as_lora[key]) or "lora_A" in key  # it trained
