"""FlexLoRA, zero-padded FedAvg and ``for_client``: heterogeneous ranks against dense SVDs."""

import math

import pytest
import torch

from fedmllm.aggregators import FedAvg, FlexLoRA
from fedmllm.aggregators.functional import lora_pairs
from fedmllm.aggregators.lowrank import factored_svd
from fedmllm.types import ClientUpdate

D_OUT, D_IN = 6, 9
KA, KB, KX = "l.v_proj.lora_A.weight", "l.v_proj.lora_B.weight", "l.norm.weight"
ALPHA = 16.0


def _s(r: int, rslora: bool = False) -> float:
    return ALPHA / math.sqrt(r) if rslora else ALPHA / r


def _upd(a: torch.Tensor, b: torch.Tensor, n: int, extra: float | None = None) -> ClientUpdate:
    state = {KA: a, KB: b}
    if extra is not None:
        state[KX] = torch.full((4,), extra, dtype=a.dtype)
    return ClientUpdate(f"n{n}", state, n)


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _dense_w(updates, p, rslora=False):
    return sum(
        pk * _s(u.state[KA].shape[0], rslora) * (u.state[KB] @ u.state[KA])
        for pk, u in zip(p, updates, strict=True)
    )


def test_factored_svd_equals_the_svd_of_the_dense_sum():
    g = torch.Generator().manual_seed(0)
    a_list = [_randn(g, 2, D_IN), _randn(g, 3, D_IN)]
    b_list = [_randn(g, D_OUT, 2), _randn(g, D_OUT, 3)]
    w = b_list[0] @ a_list[0] * 0.3 + b_list[1] @ a_list[1] * 1.7
    u, s, vh = factored_svd(a_list, b_list, [0.3, 1.7])
    torch.testing.assert_close(s, torch.linalg.svdvals(w)[:5], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(u @ torch.diag(s) @ vh, w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(u.T @ u, torch.eye(5, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("rslora", [False, True])
def test_flexlora_reproduces_the_weighted_sum_exactly_when_the_rank_suffices(rslora):
    # Ranks 4 and 2 with the rank-2 client's A inside the rank-4 client's row space:
    # W has rank ≤ 4 = r_max, so s_max · B A must equal Σ p_k s_k B_k A_k.
    g = torch.Generator().manual_seed(1)
    a4 = _randn(g, 4, D_IN)
    ups = [
        _upd(a4, _randn(g, D_OUT, 4), 3, 1.0),
        _upd(a4[1:3].clone(), _randn(g, D_OUT, 2), 1, 5.0),
    ]
    agg = FlexLoRA(alpha=ALPHA, use_rslora=rslora)
    out = agg.aggregate({}, ups, 0)
    w = _dense_w(ups, [0.75, 0.25], rslora)
    torch.testing.assert_close(_s(4, rslora) * out[KB] @ out[KA], w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out[KX], torch.full((4,), 2.0, dtype=torch.float64))


def test_flexlora_gives_each_rank_the_best_approximation_of_the_sum():
    g = torch.Generator().manual_seed(2)
    ups = [_upd(_randn(g, r, D_IN), _randn(g, D_OUT, r), n) for r, n in ((4, 1), (3, 1), (2, 2))]
    agg = FlexLoRA(weighting="uniform", alpha=ALPHA)
    out = agg.aggregate({}, ups, 0)
    assert out[KA].shape == (4, D_IN) and out[KB].shape == (D_OUT, 4)
    u, s, vh = torch.linalg.svd(_dense_w(ups, [1 / 3] * 3))
    for r in (4, 2, 1):
        mine = agg.for_client(out, r)
        best = u[:, :r] @ torch.diag(s[:r]) @ vh[:r]  # Eckart–Young, from the dense SVD
        assert mine[KA].shape == (r, D_IN) and mine[KB].shape == (D_OUT, r)
        torch.testing.assert_close(_s(r) * mine[KB] @ mine[KA], best, rtol=1e-9, atol=1e-11)
        # The contract's formula: B = U[:, :r] diag(S[:r]) / s_r, A = Vᵀ[:r] (up to signs).
        torch.testing.assert_close(mine[KA] @ mine[KA].T, torch.eye(r, dtype=torch.float64))
        col_norms = (_s(r) * mine[KB]).norm(dim=0)
        torch.testing.assert_close(col_norms, s[:r], rtol=1e-9, atol=1e-11)


def test_fedavg_zero_pads_mixed_ranks_and_keeps_refusing_other_shape_mismatches():
    g = torch.Generator().manual_seed(3)
    a2, b2, a4, b4 = (
        _randn(g, 2, D_IN),
        _randn(g, D_OUT, 2),
        _randn(g, 4, D_IN),
        _randn(g, D_OUT, 4),
    )
    out = FedAvg().aggregate({}, [_upd(a2, b2, 1, 0.0), _upd(a4, b4, 3, 4.0)], 0)
    expected_a = 0.75 * a4
    expected_a[:2] += 0.25 * a2
    expected_b = 0.75 * b4
    expected_b[:, :2] += 0.25 * b2
    torch.testing.assert_close(out[KA], expected_a, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out[KB], expected_b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out[KX], torch.full((4,), 3.0, dtype=torch.float64))
    bad = _upd(a4, b4, 1)
    bad.state[KX] = torch.zeros(5, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape mismatch"):
        FedAvg().aggregate({}, [_upd(a2, b2, 1, 0.0), bad], 0)
    with pytest.raises(ValueError, match="d_out, d_in"):
        FedAvg().aggregate({}, [_upd(a2, b2, 1), _upd(_randn(g, 2, D_IN + 1), b2, 1)], 0)


def test_default_for_client_takes_leading_components_and_pads_with_zeros():
    g = torch.Generator().manual_seed(4)
    glob = {KA: _randn(g, 4, D_IN), KB: _randn(g, D_OUT, 4), KX: torch.ones(4)}
    small = FedAvg().for_client(glob, 2)
    assert torch.equal(small[KA], glob[KA][:2]) and torch.equal(small[KB], glob[KB][:, :2])
    assert small[KX] is glob[KX]
    big = FedAvg().for_client(glob, 6)
    assert torch.equal(big[KA][:4], glob[KA]) and not big[KA][4:].any()
    assert torch.equal(big[KB][:, :4], glob[KB]) and not big[KB][:, 4:].any()
    assert glob[KA].shape == (4, D_IN)  # the global state is not modified


def test_pairing_by_name_leaves_lone_factors_to_the_plain_mean():
    keys = ["x.lora_A.weight", "x.lora_B.weight", "y.lora_A.weight", "z.lora_B.weight", "r.w"]
    pairs, others = lora_pairs(keys)
    assert pairs == {"x.": ("x.lora_A.weight", "x.lora_B.weight")}
    assert others == ["y.lora_A.weight", "z.lora_B.weight", "r.w"]
