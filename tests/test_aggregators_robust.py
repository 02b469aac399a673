"""Robust rules against Flower's own ``flwr.server.strategy.aggregate`` functions.

Every rule is run on the same LoRA-shaped client states as Flower's NumPy function (one
array per shared tensor, in key order); Flower's result is the reference.
"""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from fedmllm import aggregators, compat
from fedmllm.types import ClientUpdate

agg = pytest.importorskip("flwr.server.strategy.aggregate")
dp = pytest.importorskip("flwr.supercore.differential_privacy")

KEYS = ("l0.lora_A.weight", "l0.lora_B.weight", "head.weight")


def make_updates(k: int = 7, seed: int = 0, outlier: float = 0.0) -> list[ClientUpdate]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(k):
        state = {
            KEYS[0]: torch.randn(2, 5, generator=g),
            KEYS[1]: torch.randn(4, 2, generator=g),
            KEYS[2]: torch.randn(3, generator=g),
        }
        if outlier and i == k - 1:
            state = {key: v * outlier for key, v in state.items()}
        out.append(ClientUpdate(f"c{i}", state, num_examples=10 + 3 * i))
    return out


def flower_results(updates):
    return [
        ([u.state[k].numpy().astype(np.float64) for k in KEYS], u.num_examples) for u in updates
    ]


def assert_same(ours, ref):
    for key, arr in zip(KEYS, ref, strict=True):
        np.testing.assert_allclose(ours[key].double().numpy(), arr, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k", [5, 6])  # odd and even K (np.median averages the middle two)
def test_median_equals_flower(k):
    ups = make_updates(k, outlier=50.0)
    ours = aggregators.CoordinateMedian().aggregate({}, ups, 0)
    assert_same(ours, agg.aggregate_median(flower_results(ups)))


def test_trimmed_mean_equals_flower():
    ups = make_updates(7, seed=1, outlier=-30.0)
    ours = aggregators.TrimmedMean(trim=0.3).aggregate({}, ups, 0)
    assert_same(ours, agg.aggregate_trimmed_avg(flower_results(ups), 0.3))


@pytest.mark.parametrize("f", [1, 2])
def test_krum_equals_flower(f):
    ups = make_updates(7, seed=2, outlier=20.0)
    rule = aggregators.Krum(num_malicious=f)
    ours = rule.aggregate({}, ups, 0)
    assert_same(ours, agg.aggregate_krum(flower_results(ups), f, 0))
    assert rule.selected != ["c6"]  # the outlier is never Krum's choice


def test_multikrum_equals_flower_weighted_by_samples():
    ups = make_updates(7, seed=3, outlier=20.0)
    rule = aggregators.MultiKrum(num_malicious=1)  # keep = K - f = 6
    ours = rule.aggregate({}, ups, 0)
    assert_same(ours, agg.aggregate_krum(flower_results(ups), 1, 6))
    assert "c6" not in rule.selected and len(rule.selected) == 6


@pytest.mark.parametrize(("k", "f"), [(7, 1), (11, 2)])
def test_bulyan_equals_flower(k, f):
    ups = make_updates(k, seed=4, outlier=15.0)
    ours = aggregators.Bulyan(num_malicious=f).aggregate({}, ups, 0)
    ref = agg.aggregate_bulyan(flower_results(ups), f, agg.aggregate_krum, to_keep=0)
    assert_same(ours, ref)


def test_bulyan_refuses_too_few_clients():
    with pytest.raises(ValueError, match=r"4f\+3 = 7 clients.*got 5.*num_malicious"):
        aggregators.Bulyan(num_malicious=1).aggregate({}, make_updates(5), 0)


def test_norm_bounded_mean_equals_flower_clipping_then_fedavg():
    ups = make_updates(5, seed=5, outlier=10.0)
    glob = {k: v * 0.5 for k, v in make_updates(1, seed=9)[0].state.items()}
    ours = aggregators.NormBoundedMean(bound=2.0).aggregate(glob, ups, 0)
    g = [glob[k].numpy().astype(np.float64) for k in KEYS]
    clipped = []
    for params, n in flower_results(ups):
        dp.compute_clip_model_update(params, g, 2.0)  # Flower's FlatClip on x_k - x
        clipped.append((params, n))
    assert_same(ours, agg.aggregate(clipped))


def test_norm_bounded_default_bound_is_the_median_norm():
    ups = make_updates(5, seed=6)
    glob = {k: torch.zeros_like(v) for k, v in ups[0].state.items()}
    rule = aggregators.NormBoundedMean()
    rule.aggregate(glob, ups, 0)
    norms = sorted(float(torch.cat([v.flatten() for v in u.state.values()]).norm()) for u in ups)
    assert rule.round_stats()["bound"] == pytest.approx(norms[2])
    assert rule.round_stats()["clipped"] == 2.0  # the two norms above the median


def rescaled_twin(update: ClientUpdate, c: float, cid: str) -> ClientUpdate:
    """The same adapter (same B·A) factored differently: A·c, B/c."""
    s = dict(update.state)
    s[KEYS[0]], s[KEYS[1]] = s[KEYS[0]] * c, s[KEYS[1]] / c
    return ClientUpdate(cid, s, update.num_examples)


def test_distance_on_products_sees_through_refactoring():
    # Three copies of one adapter, two of them refactored (A·c, B/c: the layer is unchanged),
    # plus two unrelated clients. On factors the refactored copies look far from the
    # original; on products B·A they coincide with it, so Krum's neighbours differ.
    base = make_updates(1, seed=7)[0]
    others = make_updates(3, seed=8)
    ups = [base, rescaled_twin(base, 3.0, "t1"), rescaled_twin(base, 0.25, "t2"), *others[:2]]
    prod = aggregators.Krum(num_malicious=0, distance="products")
    prod.aggregate({}, ups, 0)
    assert prod.selected[0] in {"c0", "t1", "t2"}  # a zero-distance trio: score 0 + one more
    # Hand computation of the product distances of the chosen client to the twins: zero.
    ba = [u.state[KEYS[1]] @ u.state[KEYS[0]] for u in ups[:3]]
    assert torch.allclose(ba[0], ba[1], atol=1e-5) and torch.allclose(ba[0], ba[2], atol=1e-5)
    fac = aggregators.Krum(num_malicious=0, keep=3)
    fac.aggregate({}, ups, 0)
    assert set(fac.selected) != {"c0", "t1", "t2"}


def test_unequal_ranks_are_refused_with_the_fix():
    ups = make_updates(3)
    ups[0].state[KEYS[0]] = torch.zeros(3, 5)
    with pytest.raises(ValueError, match="same LoRA rank"):
        aggregators.CoordinateMedian().aggregate({}, ups, 0)


RULES = {
    "median": aggregators.CoordinateMedian,
    "trimmed_mean": aggregators.TrimmedMean,
    "krum": aggregators.Krum,
    "multikrum": aggregators.MultiKrum,
    "bulyan": aggregators.Bulyan,
    "norm_bounded": aggregators.NormBoundedMean,
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_robust_config_builds_its_rule_and_needs_individual_updates(make_cfg, rule):
    cfg = make_cfg("fedvqa_fedavg", f"aggregator={rule}", "aggregator.distance=products")
    built = instantiate(cfg.aggregator)
    assert type(built) is RULES[rule] and built.name == rule
    assert built.describe()["distance"] == "products"
    assert compat.SUM_ONLY not in built.provides  # refused under secure aggregation
    assert compat.SUM_ONLY in aggregators.FedAvg.provides


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="aggregator.distance"):
        aggregators.Krum(distance="cosine")
    with pytest.raises(ValueError, match="aggregator.trim"):
        aggregators.TrimmedMean(trim=0.5)
