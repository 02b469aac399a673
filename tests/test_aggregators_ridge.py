"""FedA²-LoRA (aggregator=ridge) against dense float64 computations of the paper's formulas."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from fedmllm.aggregators import FedA2LoRA, FedAvg
from fedmllm.aggregators.lowrank import factored_svd, product_sum, ridge_factors
from fedmllm.types import ClientUpdate

D_OUT, D_IN = 5, 7  # unequal on purpose: a transposed formula fails on shapes
KEY_A, KEY_B = "m.q_proj.lora_A.weight", "m.q_proj.lora_B.weight"


def _client(g: torch.Generator, r: int, n: int, extra: bool = False) -> ClientUpdate:
    state = {
        KEY_A: torch.randn(r, D_IN, generator=g, dtype=torch.float64),
        KEY_B: torch.randn(D_OUT, r, generator=g, dtype=torch.float64),
    }
    if extra:
        state["m.router.weight"] = torch.randn(3, 2, generator=g, dtype=torch.float64)
    return ClientUpdate(f"c{n}", state, n)


def _dense_ridge(updates, weights, lam, coefs=None, r_max=None):
    """The paper's route: form U densely, then B = U Aᵀ (A Aᵀ + λI)⁻¹ with an explicit inverse."""
    coefs = coefs or [1.0] * len(updates)
    r_max = r_max or updates[0].state[KEY_A].shape[0]
    a = torch.zeros(r_max, D_IN, dtype=torch.float64)
    u = torch.zeros(D_OUT, D_IN, dtype=torch.float64)
    for upd, w, c in zip(updates, weights, coefs, strict=True):
        a_k, b_k = upd.state[KEY_A], upd.state[KEY_B]
        a[: a_k.shape[0]] += w * a_k
        u += w * c * (b_k @ a_k)
    b = u @ a.T @ torch.linalg.inv(a @ a.T + lam * torch.eye(r_max, dtype=torch.float64))
    return a, b, u


def test_tikhonov_mode_equals_dense_paper_formula_with_sample_weights():
    g = torch.Generator().manual_seed(0)
    updates = [_client(g, 3, n) for n in (10, 30, 60)]
    out = FedA2LoRA(lam=0.7, mode="tikhonov").aggregate({}, updates, 0)
    a, b, _ = _dense_ridge(updates, [0.1, 0.3, 0.6], 0.7)
    torch.testing.assert_close(out[KEY_A], a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[KEY_B], b, rtol=1e-10, atol=1e-12)


def test_conditional_mode_drops_lambda_when_a_is_well_conditioned_and_uniform_weighting_applies():
    g = torch.Generator().manual_seed(1)
    updates = [_client(g, 3, n) for n in (10, 30, 60)]
    agg = FedA2LoRA(weighting="uniform", lam=1.0, mode="conditional")
    out = agg.aggregate({}, updates, 0)
    a, b, _ = _dense_ridge(updates, [1 / 3] * 3, 0.0)
    torch.testing.assert_close(out[KEY_B], b, rtol=1e-9, atol=1e-12)
    stats = agg.round_stats()
    assert stats["ridge_pairs"] == 0 and stats["pairs"] == 1
    assert stats["cond_max"] == pytest.approx(float(torch.linalg.cond(a @ a.T)), rel=1e-6)


def test_conditional_mode_falls_back_to_lambda_when_a_is_singular_and_records_it():
    g = torch.Generator().manual_seed(2)
    up1 = _client(g, 3, 1)
    up2 = _client(g, 3, 1)
    # The mean of row 2 cancels: A = mean(A_k) has a zero row, A Aᵀ is singular.
    up2.state[KEY_A][2] = -up1.state[KEY_A][2]
    agg = FedA2LoRA(lam=0.5, mode="conditional")
    out = agg.aggregate({}, [up1, up2], 0)
    _, b, _ = _dense_ridge([up1, up2], [0.5, 0.5], 0.5)
    torch.testing.assert_close(out[KEY_B], b, rtol=1e-10, atol=1e-12)
    assert agg.round_stats()["ridge_pairs"] == 1
    assert math.isinf(agg.round_stats()["cond_max"])


def test_identical_clients_return_the_client_in_conditional_mode():
    g = torch.Generator().manual_seed(3)
    one = _client(g, 4, 7, extra=True)
    twin = ClientUpdate("twin", {k: v.clone() for k, v in one.state.items()}, 21)
    out = FedA2LoRA(mode="conditional").aggregate({}, [one, twin], 0)
    for key, value in one.state.items():
        torch.testing.assert_close(out[key], value, rtol=1e-10, atol=1e-12)


def test_tikhonov_mode_shrinks_b_by_g_over_g_plus_lambda_on_orthogonal_rows():
    # A with orthogonal rows of squared norm 1/3 (PEFT's Kaiming init has E‖row‖² = 1/3):
    # A Aᵀ = I/3, so λ = 1 gives B = B_k (1/3) / (1/3 + 1) = B_k / 4 for identical clients.
    q, _ = torch.linalg.qr(torch.randn(D_IN, 3, dtype=torch.float64))
    a_k = q.T / math.sqrt(3.0)
    b_k = torch.randn(D_OUT, 3, dtype=torch.float64)
    ups = [ClientUpdate(c, {KEY_A: a_k, KEY_B: b_k}, 1) for c in "xy"]
    out = FedA2LoRA(lam=1.0, mode="tikhonov").aggregate({}, ups, 0)
    torch.testing.assert_close(out[KEY_B], b_k / 4, rtol=1e-12, atol=1e-12)


def test_small_lambda_gives_the_projection_of_u_on_the_row_space_of_a():
    g = torch.Generator().manual_seed(4)
    updates = [_client(g, 3, n) for n in (2, 5, 9)]
    out = FedA2LoRA(lam=1e-12, mode="tikhonov").aggregate({}, updates, 0)
    w = [2 / 16, 5 / 16, 9 / 16]
    u = sum(wk * (up.state[KEY_B] @ up.state[KEY_A]) for wk, up in zip(w, updates, strict=True))
    a = sum(wk * up.state[KEY_A] for wk, up in zip(w, updates, strict=True))
    projection = u @ torch.linalg.pinv(a) @ a  # U P, P = orthogonal projector on rows of A
    torch.testing.assert_close(out[KEY_B] @ out[KEY_A], projection, rtol=1e-8, atol=1e-10)


def test_warm_start_is_fedavg_until_the_switch_round():
    g = torch.Generator().manual_seed(5)
    updates = [_client(g, 2, n, extra=True) for n in (3, 1)]
    agg = FedA2LoRA(warmup_rounds=2, mode="conditional")
    fedavg = FedAvg().aggregate({}, updates, 0)
    for rnd in (0, 1):
        out = agg.aggregate({}, updates, rnd)
        for key in fedavg:
            torch.testing.assert_close(out[key], fedavg[key], rtol=0, atol=1e-14)
        assert agg.round_stats() == {"warmup": 1.0}
    out = agg.aggregate({}, updates, 2)
    _, b, _ = _dense_ridge(updates, [0.75, 0.25], 0.0)
    torch.testing.assert_close(out[KEY_B], b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out["m.router.weight"], fedavg["m.router.weight"])


@pytest.mark.parametrize("rslora", [False, True])
def test_heterogeneous_ranks_solve_against_the_clients_true_updates(rslora):
    g = torch.Generator().manual_seed(6)
    updates = [_client(g, 2, 1), _client(g, 4, 1), _client(g, 4, 2)]
    alpha = 8.0

    def s(r):
        return alpha / math.sqrt(r) if rslora else alpha / r

    agg = FedA2LoRA(lam=0.3, mode="tikhonov", alpha=alpha, use_rslora=rslora)
    out = agg.aggregate({}, updates, 0)
    w = [0.25, 0.25, 0.5]
    a, b, u_scaled = _dense_ridge(updates, w, 0.3, coefs=[s(2) / s(4), 1.0, 1.0], r_max=4)
    torch.testing.assert_close(out[KEY_A], a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[KEY_B], b, rtol=1e-10, atol=1e-12)
    # The target really is the mean of the clients' applied updates s_k B_k A_k.
    applied = sum(
        wk * s(up.state[KEY_A].shape[0]) * (up.state[KEY_B] @ up.state[KEY_A])
        for wk, up in zip(w, updates, strict=True)
    )
    torch.testing.assert_close(s(4) * u_scaled, applied)
    # A rank-2 client loads the first two components with B carried over to its own scaling.
    mine = agg.for_client(out, 2)
    torch.testing.assert_close(mine[KEY_A], out[KEY_A][:2])
    torch.testing.assert_close(s(2) * mine[KEY_B], s(4) * out[KEY_B][:, :2])


def test_bad_settings_are_refused_with_the_value_named():
    with pytest.raises(ValueError, match="mode"):
        FedA2LoRA(mode="exact")
    with pytest.raises(ValueError, match="renamed: use mode=conditional"):
        FedA2LoRA(mode="paper")
    with pytest.raises(ValueError, match="lam"):
        FedA2LoRA(lam=0.0)
    with pytest.raises(ValueError, match="warmup"):
        FedA2LoRA(warmup_rounds=-1)
    with pytest.raises(ValueError, match="lambda"):
        ridge_factors([torch.ones(1, 2)], [torch.ones(2, 1)], [1.0], lam=-1.0)


def test_describe_logs_weighting_mode_and_lambda():
    facts = FedA2LoRA(weighting="uniform", lam=0.1, mode="tikhonov", warmup_rounds=3).describe()
    assert facts["aggregator"] == "ridge" and facts["weighting"] == "uniform"
    assert (facts["lam"], facts["mode"], facts["warmup_rounds"]) == (0.1, "tikhonov", 3)


def _pair(a: list[list[float]], b: list[list[float]], n: int = 1, cid: str = "c") -> ClientUpdate:
    state = {
        KEY_A: torch.tensor(a, dtype=torch.float64),
        KEY_B: torch.tensor(b, dtype=torch.float64),
    }
    return ClientUpdate(cid, state, n)


def test_default_is_tikhonov_with_lambda_0_1_by_hand_at_rank_one():
    # A_1 = [1, 0], A_2 = [1, 2], B_1 = [2], B_2 = [4], equal weights. By hand:
    # A = [1, 1], A Aᵀ = 2, U = ½(2·[1, 0] + 4·[1, 2]) = [3, 4], U Aᵀ = 7,
    # so B = 7 / (2 + 0.1) = 10/3 (Tikhonov, λ = 0.1) and 7 / 2 = 3.5 (plain solve).
    ups = [_pair([[1.0, 0.0]], [[2.0]], cid="x"), _pair([[1.0, 2.0]], [[4.0]], cid="y")]
    agg = FedA2LoRA()
    assert (agg.mode, agg.lam) == ("tikhonov", 0.1)
    out = agg.aggregate({}, ups, 0)
    torch.testing.assert_close(out[KEY_A], torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    assert float(out[KEY_B]) == pytest.approx(10 / 3, rel=1e-12)
    assert agg.round_stats()["ridge_pairs"] == 1
    plain = FedA2LoRA(mode="conditional").aggregate({}, ups, 0)
    assert float(plain[KEY_B]) == pytest.approx(3.5, rel=1e-12)


def test_tikhonov_shrinks_the_weak_direction_that_conditional_keeps():
    # Identical clients with A = [[1, 0, 0], [0, 0.1, 0]]: A Aᵀ = diag(1, 0.01), cond 100,
    # so the conditional solve is plain and returns B_k = [1, 1]; λ = 0.1 scales column i
    # by g_i / (g_i + λ): 1 / 1.1 and 0.01 / 0.11 = 1/11.
    a, b = [[1.0, 0.0, 0.0], [0.0, 0.1, 0.0]], [[1.0, 1.0]]
    ups = [_pair(a, b, cid="x"), _pair(a, b, cid="y")]
    out = FedA2LoRA(lam=0.1).aggregate({}, ups, 0)
    expected = torch.tensor([[1 / 1.1, 1 / 11]], dtype=torch.float64)
    torch.testing.assert_close(out[KEY_B], expected, rtol=1e-12, atol=1e-14)
    cond = FedA2LoRA(lam=0.1, mode="conditional")
    torch.testing.assert_close(
        cond.aggregate({}, ups, 0)[KEY_B], torch.tensor(b, dtype=torch.float64)
    )
    assert cond.round_stats()["ridge_pairs"] == 0


def test_ridge_config_defaults_to_tikhonov_lambda_0_1():
    from pathlib import Path

    import yaml

    import fedmllm

    cfg = Path(fedmllm.__file__).parent / "configs" / "aggregator" / "ridge.yaml"
    values = yaml.safe_load(cfg.read_text())
    assert (values["mode"], values["lam"]) == ("tikhonov", 0.1)


class _LargestOutput(TorchDispatchMode):
    """Records the largest tensor any aten op produces inside the block."""

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_ridge_and_flexlora_never_allocate_a_d_out_by_d_in_matrix():
    g = torch.Generator().manual_seed(8)
    d, r = 48, 2
    a_list = [torch.randn(r, d, generator=g) for _ in range(3)]
    b_list = [torch.randn(d, r, generator=g) for _ in range(3)]
    with _LargestOutput() as meter:
        ridge_factors(a_list, b_list, [0.2, 0.3, 0.5], mode="conditional")
        factored_svd(a_list, b_list, [0.2, 0.3, 0.5])
    # The largest legitimate tensors are d×(K·r) stacks; a dense U or W would be d×d.
    assert 0 < meter.largest <= d * 3 * r < d * d
    with _LargestOutput() as meter:
        product_sum(a_list, b_list, [1.0, 1.0, 1.0])
    assert meter.largest == d * d  # the meter does see a dense product when one is formed


def test_round_stats_report_the_shrinkage_of_b_by_hand():
    # A Aᵀ = diag(1, 0.01) for identical clients with B_k = [1, 1]; λ = 0.1 keeps 1/1.1 and
    # 1/11 of the two columns: shrink_min = 0.01 / 0.11 = 1/11, ‖B‖ / ‖B_k‖ =
    # sqrt(1/1.21 + 1/121) / sqrt(2).
    a, b = [[1.0, 0.0, 0.0], [0.0, 0.1, 0.0]], [[1.0, 1.0]]
    agg = FedA2LoRA(lam=0.1)
    agg.aggregate({}, [_pair(a, b, cid="x"), _pair(a, b, cid="y")], 0)
    stats = agg.round_stats()
    assert stats["shrink_min"] == pytest.approx(1 / 11, rel=1e-9)
    assert stats["b_ratio_median"] == pytest.approx(math.sqrt(1 / 1.21 + 1 / 121) / math.sqrt(2))
    cond = FedA2LoRA(lam=0.1, mode="conditional")
    cond.aggregate({}, [_pair(a, b, cid="x"), _pair(a, b, cid="y")], 0)
    assert cond.round_stats()["shrink_min"] == 1.0
    assert cond.round_stats()["b_ratio_median"] == pytest.approx(1.0)
