"""FedLEASE: clustering maths by hand, the server rule, the expert layer and client phases."""

from __future__ import annotations

import math

import pytest
import torch
from toy_engine import FakeFabric, lora_kwargs, toy_batches, toy_engine

from fedmllm.aggregators import clustering
from fedmllm.aggregators.fedlease import CLUSTER_PREFIX, NUM_EXPERTS_KEY, UPLOAD_KEY, FedLEASE
from fedmllm.lora.cluster_experts import ClusterExpertLinear
from fedmllm.methods import FedLEASEMethod
from fedmllm.methods import fedlease as client_side
from fedmllm.types import ClientUpdate

# Distances of four points: {0, 1} close, {2, 3} close.
D4 = torch.tensor(
    [[0.0, 1.0, 4.0, 5.0], [1.0, 0.0, 3.0, 6.0], [4.0, 3.0, 0.0, 2.0], [5.0, 6.0, 2.0, 0.0]],
    dtype=torch.float64,
)


def test_cosine_distances_by_hand():
    feats = [[torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 2.0])], [torch.tensor([3.0, 3.0])]]
    d = clustering.cosine_distances(feats)
    c = 1 - 1 / math.sqrt(2)
    torch.testing.assert_close(d, torch.tensor([[0, 1, c], [1, 0, c], [c, c, 0]], dtype=d.dtype))
    two_layers = [f + [torch.tensor([1.0, 0.0])] for f in feats]  # second layer identical
    torch.testing.assert_close(clustering.cosine_distances(two_layers), d / 2)


def test_average_linkage_differs_from_single_and_complete():
    # After {0,1} merge: avg({0,1},2)=6, avg({0,1},3)=5.25, d(2,3)=5.5. Average linkage joins 3
    # to {0,1}; single linkage would join 2 (distance 2), complete would pair {2,3} (5.5 < 6.5).
    d = torch.tensor(
        [[0, 1, 2, 4], [1, 0, 10, 6.5], [2, 10, 0, 5.5], [4, 6.5, 5.5, 0]], dtype=torch.float64
    )
    assert clustering.agglomerative(d, 2) == [0, 0, 1, 0]
    assert clustering.agglomerative(d, 4) == [0, 1, 2, 3]
    assert clustering.agglomerative(d, 1) == [0, 0, 0, 0]


def test_silhouette_by_hand():
    # labels [0,0,1,1]: s = (b−a)/max(a,b) with a, b the mean own/nearest-other distances
    s = [(4.5 - 1) / 4.5, (4.5 - 1) / 4.5, (3.5 - 2) / 3.5, (5.5 - 2) / 5.5]
    assert clustering.silhouette(D4, [0, 0, 1, 1]) == pytest.approx(sum(s) / 4)
    # singletons score 0: labels [0,0,1,2] -> (0.75 + 2/3 + 0 + 0) / 4
    assert clustering.silhouette(D4, [0, 0, 1, 2]) == pytest.approx((0.75 + 2 / 3) / 4)
    labels, scores = clustering.choose_clusters(D4, max_clusters=3)
    assert labels == [0, 0, 1, 1] and set(scores) == {2, 3} and scores[2] > scores[3]
    assert clustering.choose_clusters(D4[:2, :2], 4)[0] == [0, 0]  # silhouette undefined: one


def _warm_update(cid: str, b_dir: torch.Tensor, a_val: float, n: int) -> ClientUpdate:
    return ClientUpdate(
        cid,
        {
            "m.q.warm.lora_A.weight": torch.full((2, 3), a_val),
            "m.q.warm.lora_B.weight": torch.outer(b_dir, torch.tensor([1.0, 0.5])),
        },
        n,
    )


def test_fedlease_server_clusters_by_b_and_averages_experts_within_clusters():
    agg = FedLEASE(warmup_rounds=2, max_clusters=3)
    assert agg.broadcast_extras() == {UPLOAD_KEY: torch.tensor(0)}
    assert agg.aggregate({}, [], 0) == {}  # warm-up: nothing averaged
    assert int(agg.broadcast_extras()[UPLOAD_KEY]) == 1  # round 1 is the upload round
    e1, e2 = torch.tensor([1.0, 0.1, 0.0]), torch.tensor([0.0, 0.2, 1.0])
    ups = [
        _warm_update("a", e1, 1.0, 1),
        _warm_update("b", e2, 5.0, 2),
        _warm_update("c", 2 * e1 + 0.01, 3.0, 3),
        _warm_update("d", e2 * 3, 7.0, 2),
    ]
    experts = agg.aggregate({}, ups, 1)
    assert agg.assignment == {"a": 0, "b": 1, "c": 0, "d": 1}
    # expert 0 = sample-weighted mean of a (n=1) and c (n=3)
    a_mean = (1 * 1.0 + 3 * 3.0) / 4
    torch.testing.assert_close(experts["m.q.experts.0.lora_A.weight"], torch.full((2, 3), a_mean))
    b_expected = (
        ups[0].state["m.q.warm.lora_B.weight"] + 3 * ups[2].state["m.q.warm.lora_B.weight"]
    ) / 4
    torch.testing.assert_close(experts["m.q.experts.0.lora_B.weight"], b_expected)
    assert set(experts) == {f"m.q.experts.{j}.lora_{f}.weight" for j in (0, 1) for f in "AB"}
    extras = agg.broadcast_extras()
    assert int(extras[NUM_EXPERTS_KEY]) == 2 and int(extras[CLUSTER_PREFIX + "d"]) == 1

    # clustered round: only a and c (cluster 0) take part; expert 1 must not move
    new = {k: v + 1 for k, v in experts.items() if ".experts.0." in k}
    ups2 = [ClientUpdate("a", new, 1), ClientUpdate("c", {k: v * 0 for k, v in new.items()}, 3)]
    out = agg.aggregate(experts, ups2, 2)
    for k in new:
        torch.testing.assert_close(out[k], new[k] * 0.25)
    for k in experts:
        if ".experts.1." in k:
            assert torch.equal(out[k], experts[k])
    restored = FedLEASE(warmup_rounds=2, max_clusters=3)
    restored.load_state_dict(agg.state_dict())
    assert restored.broadcast_extras().keys() == extras.keys()
    with pytest.raises(KeyError, match="sent"):
        agg.aggregate(out, [ClientUpdate("b", new, 1)], 3)  # b is cluster 1, sent expert 0


def test_wire_format_is_the_same_on_both_sides():
    assert (client_side.UPLOAD_KEY, client_side.NUM_EXPERTS_KEY, client_side.CLUSTER_PREFIX) == (
        UPLOAD_KEY,
        NUM_EXPERTS_KEY,
        CLUSTER_PREFIX,
    )


def test_expert_layer_mixes_active_experts_with_router_softmax():
    torch.manual_seed(0)
    layer = ClusterExpertLinear(torch.nn.Linear(4, 3), r=2, alpha=4.0, num_experts=3)
    with torch.no_grad():
        for p in layer.parameters():
            if p.requires_grad:
                p.copy_(torch.randn_like(p))
    x = torch.randn(5, 4)
    base = layer.base_layer(x)

    def pair(m):
        return x @ m.lora_A.weight.T @ m.lora_B.weight.T

    torch.testing.assert_close(layer(x), base + 2.0 * pair(layer.warm))  # warm-up
    layer.active = 2
    g = torch.softmax(x @ layer.router.weight[:2].T, dim=-1)
    mix = g[:, :1] * pair(layer.experts[0]) + g[:, 1:] * pair(layer.experts[1])
    torch.testing.assert_close(layer(x), base + 2.0 * mix)


def test_fedlease_client_trains_only_its_expert_and_router_after_clustering():
    m = FedLEASEMethod(toy_engine(), max_experts=3, **lora_kwargs())
    state = m.adapter_state()
    m.begin_client("a", {UPLOAD_KEY: torch.tensor(0)})
    assert m.shared_keys(state) == []
    m.begin_client("a", {UPLOAD_KEY: torch.tensor(1)})
    assert m.shared_keys(state) and all(".warm." in k for k in m.shared_keys(state))
    extras = {NUM_EXPERTS_KEY: torch.tensor(2), CLUSTER_PREFIX + "a": torch.tensor(1)}
    m.begin_client("a", extras)
    before = m.adapter_state()
    m.local_update(FakeFabric(), toy_batches(0), 3, m.configure_optimizers(), lambda i: 0.05)
    after = m.adapter_state()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".experts.1." in k or k.endswith("router.weight") for k in changed)
    assert any(k.endswith("router.weight") for k in changed)
    assert m.shared_keys(after) == sorted(k for k in after if ".experts.1." in k)
    assert m.private_keys(after) == sorted(k for k in after if k.endswith("router.weight"))
    with pytest.raises(KeyError, match="no cluster"):
        m.begin_client("z", extras)
    with pytest.raises(ValueError, match="max_experts"):
        m.begin_client("a", {**extras, NUM_EXPERTS_KEY: torch.tensor(4)})
