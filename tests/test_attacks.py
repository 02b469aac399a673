"""The ``attack=`` group: what an attacking client sends, computed by hand from an honest run."""

from __future__ import annotations

import pytest
import torch
from toy_engine import lora_kwargs, toy_engine, toy_simulator

from fedmllm.aggregators import CoordinateMedian, FedAvg
from fedmllm.data.schema import Sample
from fedmllm.federation.attacks import Attack
from fedmllm.methods import LoRAMethod


def one_round(tmp_path, name: str, rule=None, **attack):
    torch.manual_seed(0)  # the same initial adapter in every run
    method = LoRAMethod(toy_engine(), **lora_kwargs())
    cfg = {"name": name, "clients": 1, **attack} if name != "none" else {}
    sim = toy_simulator(method, rule or FedAvg(), tmp_path / name, rounds=1, attack=cfg)
    before = {k: v.clone() for k, v in sim.global_state.items()}
    sim.run_round()
    return {u.client_id: u.state for u in sim.last_updates}, before, sim.global_state


@pytest.mark.parametrize(("name", "factor"), [("sign_flip", -10.0), ("scaled", 3.0)])
def test_model_poisoning_rewrites_only_the_attackers_update(tmp_path, name, factor):
    clean, g, _ = one_round(tmp_path, "none")
    hit, g2, _ = one_round(tmp_path, name, scale=abs(factor))
    assert all(torch.equal(g[k], g2[k]) for k in g)
    for key, x_k in clean["c0"].items():  # the first client attacks: x + factor·(x_k − x)
        torch.testing.assert_close(hit["c0"][key], g[key] + factor * (x_k - g[key]))
        assert not torch.equal(x_k, g[key])  # it did train: the test is not vacuous
    for cid in ("c1", "c2"):  # honest clients are untouched
        assert all(torch.equal(hit[cid][k], clean[cid][k]) for k in clean[cid])


def test_free_rider_sends_the_global_state_back(tmp_path):
    hit, g, _ = one_round(tmp_path, "free_rider")
    assert all(torch.equal(hit["c0"][k], g[k]) for k in g)


def test_gaussian_sends_noise_of_the_given_scale(tmp_path):
    hit, g, _ = one_round(tmp_path, "gaussian", sigma=0.5)
    noise = torch.cat([(hit["c0"][k] - g[k]).flatten() for k in g])
    assert noise.numel() > 90  # std within 20 % is ~3 standard errors
    assert noise.std().item() == pytest.approx(0.5, rel=0.2)
    assert abs(noise.mean().item()) < 0.15
    again, _, _ = one_round(tmp_path / "again", "gaussian", sigma=0.5)  # seeded by (seed, round)
    assert all(torch.equal(again["c0"][k], hit["c0"][k]) for k in g)


def test_median_resists_a_sign_flip_that_wrecks_fedavg(tmp_path):
    _, _, clean = one_round(tmp_path / "clean", "none")
    _, _, avg = one_round(tmp_path / "avg", "sign_flip")
    _, _, med = one_round(tmp_path / "med", "sign_flip", rule=CoordinateMedian())

    def dist(a):
        return sum((a[k] - clean[k]).norm() ** 2 for k in clean).sqrt().item()

    assert dist(med) < dist(avg) / 3


def _vqa(answer: str, qtype: str) -> Sample:
    return Sample(None, "x", "q?", answer, "vqa", "open", meta={"qtype": qtype})


def test_label_flip_gives_every_sample_a_wrong_answer_of_its_type():
    train = [_vqa(a, "colour") for a in ("red", "blue", "red", "green")]
    train += [_vqa(a, "yesno") for a in ("yes", "no", "yes")] + [_vqa("3", "count")]
    out = Attack("label_flip", 1).poison_data(train)
    for before, after in zip(train, out, strict=True):
        assert after.meta == before.meta and after.question == before.question
        if before.meta["qtype"] == "count":  # one answer in its group: nothing else to say
            assert after.answer == "3"
            continue
        assert after.answer != before.answer
        same_type = {s.answer for s in train if s.meta == before.meta}
        assert after.answer in same_type
    assert [s.answer for s in out[4:7]] == ["no", "yes", "no"]  # yes/no swap
    assert train[0].answer == "red"  # the client's own data is not modified


def test_which_clients_attack_and_clear_errors():
    ids = ["aqua", "gqa", "vizwiz"]
    assert Attack.from_config({"name": "sign_flip", "clients": 2}).attackers(ids) == ids[:2]
    assert Attack.from_config({"name": "scaled", "clients": ["vizwiz"]}).attackers(ids) == [
        "vizwiz"
    ]
    assert Attack.from_config(None).attackers(ids) == []
    with pytest.raises(ValueError, match="attack.name='flip'.*sign_flip"):
        Attack.from_config({"name": "flip"})
    with pytest.raises(ValueError, match="attack.clients names unknown clients"):
        Attack.from_config({"name": "scaled", "clients": ["x"]}).attackers(ids)


def test_attack_config_group_composes(make_cfg):
    cfg = make_cfg("fedvqa_fedavg", "attack=sign_flip")
    assert (cfg.attack.name, cfg.attack.clients, cfg.attack.scale) == ("sign_flip", 1, 10.0)
    assert make_cfg("fedvqa_fedavg").attack.name == "none"
