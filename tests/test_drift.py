"""Drift diagnostics on hand-made adapter states, and their wiring into the round loop."""

from __future__ import annotations

import math

import pytest
import torch

from fedmllm.federation.drift import Moments, cosine, drift_logs, drift_stats

A = "layers.0.q_proj.lora_A.weight"
B = "layers.0.q_proj.lora_B.weight"


def _source(states: dict[str, dict[str, torch.Tensor]]):
    return lambda: iter(states.items())


def test_identical_clients_have_zero_variance_and_distance():
    s = {A: torch.tensor([[0.5, -1.0]]), B: torch.tensor([[2.0], [3.0]])}
    states = {c: {k: v.clone() for k, v in s.items()} for c in ("a", "b", "c")}
    zero = {k: torch.zeros_like(v) for k, v in s.items()}
    rec = drift_stats(_source(states), global_after=s, reference=zero)
    assert rec["variance"] == 0.0 and rec["variance_by_kind"] == {"lora_A": 0.0, "lora_B": 0.0}
    assert rec["dist_global"] == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert rec["dist_mean"] == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert all(v == pytest.approx(1.0) for v in rec["cos_mean"].values())
    assert rec["cos_pairwise"] == [[pytest.approx(1.0)] * 3] * 3


def test_hand_computed_two_clients():
    # A: [1, 2] and [3, 6] -> per-element population variances 1 and 4; B: [0] and [2] -> 1.
    states = {
        "x": {A: torch.tensor([[1.0, 2.0]]), B: torch.tensor([[0.0]])},
        "y": {A: torch.tensor([[3.0, 6.0]]), B: torch.tensor([[2.0]])},
    }
    global_after = {A: torch.tensor([[2.0, 4.0]])}  # only A is shared
    reference = {A: torch.zeros(1, 2), B: torch.zeros(1, 1)}
    rec = drift_stats(_source(states), global_after, reference)
    assert rec["variance"] == pytest.approx((1 + 4 + 1) / 3)
    assert rec["variance_by_kind"] == {"lora_A": pytest.approx(2.5), "lora_B": pytest.approx(1.0)}
    # dist_global over the shared key only: |[1,2]-[2,4]| = sqrt(5), |[3,6]-[2,4]| = sqrt(5)
    assert rec["dist_global"] == {
        "x": pytest.approx(math.sqrt(5)),
        "y": pytest.approx(math.sqrt(5)),
    }
    # mean = A [2,4], B [1]; |x - mean|^2 = 1 + 4 + 1
    assert rec["dist_mean"]["x"] == pytest.approx(math.sqrt(6))
    # updates from zero: x=(1,2,0), y=(3,6,2); cos = (3+12+0) / (sqrt5 * sqrt49)
    expected = 15 / (math.sqrt(5) * 7)
    assert rec["cos_pairwise"][0][1] == pytest.approx(expected)
    logs = drift_logs(rec)
    assert logs["drift/cos_pairwise"] == pytest.approx(expected)
    assert logs["drift/dist_global"] == pytest.approx(math.sqrt(5))
    assert logs["client_x/drift/dist_mean"] == pytest.approx(math.sqrt(6))
    assert logs["drift/variance/lora_B"] == pytest.approx(1.0)


def test_opposite_and_zero_updates():
    ref = {A: torch.tensor([[1.0, 1.0]])}
    states = {"p": {A: torch.tensor([[2.0, 1.0]])}, "q": {A: torch.tensor([[0.0, 1.0]])}}
    rec = drift_stats(_source(states), {}, ref)
    assert rec["cos_pairwise"][0][1] == pytest.approx(-1.0)
    assert "dist_global" not in rec  # nothing shared (Standalone)
    assert rec["cos_mean"] == {"p": None, "q": None}  # the mean update is zero: undefined
    assert cosine(torch.zeros(3), torch.ones(3)) is None
    assert "drift/cos_mean" not in drift_logs(rec)


def test_welford_variance_matches_torch_var_and_pairwise_is_bounded():
    g = torch.Generator().manual_seed(0)
    states = {
        str(i): {A: torch.randn(4, 8, generator=g), B: torch.randn(8, 4, generator=g) * 0.1}
        for i in range(5)
    }
    ref = {A: torch.zeros(4, 8), B: torch.zeros(8, 4)}
    rec = drift_stats(_source(states), {}, ref, pairwise_max=4)
    flat = torch.stack([torch.cat([s[A].flatten(), s[B].flatten()]) for s in states.values()])
    assert rec["variance"] == pytest.approx(float(flat.double().var(0, unbiased=False).mean()))
    assert "cos_pairwise" not in rec  # 5 clients > pairwise_max
    with pytest.raises(KeyError, match="reference lacks"):
        drift_stats(_source(states), {}, {A: torch.zeros(4, 8)})


def test_keys_not_common_to_all_clients_are_skipped_not_fatal():
    # q lacks B and has an extra C: only A is common to both clients
    states = {
        "p": {A: torch.tensor([[0.0, 2.0]]), B: torch.ones(1, 1)},
        "q": {A: torch.tensor([[2.0, 2.0]]), "C": torch.ones(3)},
    }
    rec = drift_stats(_source(states), {}, {A: torch.zeros(1, 2), B: torch.zeros(1, 1)})
    assert rec["keys"] == 1 and rec["skipped_keys"] == 2  # B and C
    assert rec["variance"] == pytest.approx((1.0 + 0.0) / 2)  # A: elements [0,2] and [2,2]
    # a global of another rank than the clients' (heterogeneous ranks): no distance, no crash
    rec = drift_stats(_source(states), {A: torch.zeros(4, 2)}, {A: torch.zeros(1, 2)})
    assert "dist_global" not in rec and rec["dist_mean"]["p"] == pytest.approx(
        1.0
    )  # A: [0,2]-[1,2]
    m = Moments()
    m.add({A: torch.zeros(1, 2)})
    m.add({A: torch.zeros(2, 2)})  # heterogeneous ranks: same key, another shape
    assert m.mean == {} and m.skipped == {A}


def test_round_loop_records_drift_of_the_clients_local_adapters(make_cfg, tmp_path):
    from fedmllm.build import build_components, make_simulator

    cfg = make_cfg("fedmed_standalone", "federation.local_steps=2", "federation.lr=0.01")
    c = build_components(cfg)
    sim, _ = make_simulator(cfg, c, tmp_path / "run")
    logs = sim.run_round()
    entry = sim.history[-1]
    ids = [cl.client_id for cl in c.train_clients]
    assert entry["round"] == 1 and set(entry["train"]) == set(ids)
    assert all("loss" in m for m in entry["train"].values())
    # Standalone keeps everything private: recompute the variance from the store directly.
    locals_ = [sim.store.get(cid)[0] for cid in entry["drift"]["clients"]]
    keys = sorted(locals_[0])
    flat = torch.stack([torch.cat([s[k].flatten() for k in keys]) for s in locals_]).double()
    assert entry["drift"]["variance"] == pytest.approx(float(flat.var(0, unbiased=False).mean()))
    assert entry["drift"]["variance"] > 0
    assert "dist_global" not in entry["drift"]
    assert logs["drift/variance"] == entry["drift"]["variance"]
    assert {f"client_{cid}/drift/dist_mean" for cid in ids} <= set(logs)
