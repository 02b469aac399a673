"""VeRA: the layer equals PEFT's VeRA for the same weights; FedA² for VeRA against brute force."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from peft import VeraConfig, get_peft_model
from transformers import RobertaConfig, RobertaModel

from fedmllm.aggregators import FedA2LoRA
from fedmllm.aggregators.vera_ridge import vera_ridge
from fedmllm.methods import VeRAMethod
from fedmllm.types import ClientUpdate

R, SEED = 4, 7


def tiny_roberta() -> RobertaModel:
    torch.manual_seed(0)
    cfg = RobertaConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=20,
        pad_token_id=1,
    )
    return RobertaModel(cfg).eval()


def ours_and_peft(targets=("query", "value", "intermediate_dense")):
    base = tiny_roberta()
    # "dense" leaves exist in several shapes (16->24, 24->16): the shared pair is sliced.
    leaves = ["query", "value"] + (["dense"] if "intermediate_dense" in targets else [])
    peft_model = get_peft_model(
        copy.deepcopy(base),
        VeraConfig(
            r=R,
            target_modules=leaves,
            projection_prng_key=SEED,
            vera_dropout=0.0,
            d_initial=0.1,
            save_projection=True,
        ),
    )
    method = VeRAMethod(
        SimpleNamespace(model=base),
        target_modules=leaves,
        module_filter=None,
        r=R,
        projection_seed=SEED,
        d_initial=0.1,
        dropout=0.0,
    )
    return method, peft_model


def peft_layers(peft_model):
    return {
        name.removeprefix("base_model.model."): m
        for name, m in peft_model.named_modules()
        if hasattr(m, "vera_lambda_d") and isinstance(m.vera_lambda_d, torch.nn.ParameterDict)
    }


def test_same_seed_gives_peft_projections_and_initial_vectors():
    method, peft_model = ours_and_peft()
    theirs = peft_layers(peft_model)
    ours = dict(method.vera_layers())
    assert set(ours) == set(theirs)
    assert len(ours) == 11  # q, v and three "dense" per layer, and the pooler
    for name, layer in ours.items():
        p = theirs[name]
        a = p.vera_A["default"][:, : layer.in_features]
        b = p.vera_B["default"][: layer.out_features]
        assert torch.equal(layer.vera_A, a) and torch.equal(layer.vera_B, b)
        assert torch.equal(layer.vera_lambda_b, p.vera_lambda_b["default"])  # zeros
        assert torch.equal(layer.vera_lambda_d, p.vera_lambda_d["default"])  # d_initial


def test_outputs_equal_peft_vera_for_the_same_weights():
    method, peft_model = ours_and_peft()
    theirs = peft_layers(peft_model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # A projection that is no longer the seed's (PEFT shares one A across layers):
        # everything is copied into ours, so the check does not rest on equal seeds.
        shared_a = next(iter(theirs.values())).vera_A["default"]
        shared_a.add_(0.1 * torch.randn(shared_a.shape, generator=gen))
        for name, layer in method.vera_layers():
            p = theirs[name]
            # Trained-looking vectors in PEFT.
            p.vera_lambda_d["default"].copy_(torch.randn(R, generator=gen))
            p.vera_lambda_b["default"].copy_(torch.randn(layer.out_features, generator=gen))
            layer.vera_A.copy_(p.vera_A["default"][:, : layer.in_features])
            layer.vera_B.copy_(p.vera_B["default"][: layer.out_features])
            layer.vera_lambda_d.copy_(p.vera_lambda_d["default"])
            layer.vera_lambda_b.copy_(p.vera_lambda_b["default"])
    ids = torch.randint(2, 40, (3, 9), generator=gen)
    ours = method.model(input_ids=ids).last_hidden_state
    ref = peft_model(input_ids=ids).last_hidden_state
    plain = tiny_roberta()(input_ids=ids).last_hidden_state
    assert not torch.allclose(ours, plain, atol=1e-3)  # the adapters act
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for name, layer in method.vera_layers():
        torch.testing.assert_close(layer.delta_weight(), theirs[name].get_delta_weight("default"))


def test_only_d_and_b_train_and_travel():
    method, _ = ours_and_peft(targets=("query", "value"))
    state = method.adapter_state()
    assert state and all(k.endswith(("vera_lambda_d", "vera_lambda_b")) for k in state)
    assert method.shared_keys(state) == sorted(state)
    trainable = {n for n, p in method.model.named_parameters() if p.requires_grad}
    assert trainable == set(state)
    assert "paired" in method.offers() and "lora_pairs" not in method.offers()
    consts = method.server_constants()
    assert len(consts) == 2 * len(method.vera_layers())


def mean_update(w, ds, bs, a, b):
    """U = Σ w_k Λ_{b_k} B Λ_{d_k} A, formed densely."""
    return sum(
        wk * (bk[:, None] * b) @ (dk[:, None] * a) for wk, dk, bk in zip(w, ds, bs, strict=True)
    )


def _clients(k=3, r=5, d_in=7, d_out=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(r, d_in, generator=g, dtype=torch.float64)
    b = torch.randn(d_out, r, generator=g, dtype=torch.float64)
    ds = [torch.randn(r, generator=g, dtype=torch.float64) for _ in range(k)]
    bs = [torch.randn(d_out, generator=g, dtype=torch.float64) for _ in range(k)]
    w = torch.rand(k, generator=g, dtype=torch.float64)
    return ds, bs, (w / w.sum()).tolist(), a, b


@pytest.mark.parametrize("lam", [1e-3, 1.0])
def test_vera_ridge_equals_rowwise_least_squares_on_dense_matrices(lam):
    ds, bs, w, a, b = _clients()
    d_bar, b_new, rows = vera_ridge(ds, bs, w, a, b, lam=lam, mode="tikhonov")
    u = sum(
        wk * (bk[:, None] * b) @ (dk[:, None] * a) for wk, dk, bk in zip(w, ds, bs, strict=True)
    )
    v = b @ (d_bar[:, None] * a)  # row i: B_i Λ_d̄ A
    for i in range(b.shape[0]):
        # min_x ‖x v_i − U_i‖² + λ x² ‖B_i‖²: stack the regulariser as one more equation.
        lhs = torch.cat([v[i], (lam**0.5) * b[i].norm().reshape(1)])[:, None]
        rhs = torch.cat([u[i], torch.zeros(1, dtype=u.dtype)])[:, None]
        x = torch.linalg.lstsq(lhs, rhs).solution
        torch.testing.assert_close(b_new[i], x[0, 0])
    torch.testing.assert_close(d_bar, sum(wk * dk for wk, dk in zip(w, ds, strict=True)))
    assert rows == b.shape[0]


def test_vera_ridge_fits_the_mean_update_better_than_averaging_b():
    ds, bs, w, a, b = _clients(seed=3)
    d_bar, b_new, _ = vera_ridge(ds, bs, w, a, b, lam=1e-9, mode="tikhonov")
    u = sum(
        wk * (bk[:, None] * b) @ (dk[:, None] * a) for wk, dk, bk in zip(w, ds, bs, strict=True)
    )
    b_avg = sum(wk * bk for wk, bk in zip(w, bs, strict=True))
    err_ridge = ((b_new[:, None] * b) @ (d_bar[:, None] * a) - u).norm()
    err_avg = ((b_avg[:, None] * b) @ (d_bar[:, None] * a) - u).norm()
    assert err_ridge < err_avg


def test_identical_clients_are_reproduced_in_conditional_mode():
    ds, bs, w, a, b = _clients(k=1)
    d_bar, b_new, rows = vera_ridge(ds * 3, bs * 3, [0.2, 0.3, 0.5], a, b, mode="conditional")
    torch.testing.assert_close(d_bar, ds[0])
    torch.testing.assert_close(b_new, bs[0])
    assert rows == 0


def test_the_ridge_rule_solves_vera_layers_with_the_bound_projections():
    ds, bs, w, a, b = _clients(seed=5)
    key = "layer.q."
    ups = [
        ClientUpdate(
            str(i), {key + "vera_lambda_d": d.float(), key + "vera_lambda_b": bb.float()}, n
        )
        for i, (d, bb, n) in enumerate(zip(ds, bs, [10, 20, 30], strict=True))
    ]
    glob = {k: torch.zeros_like(v) for k, v in ups[0].state.items()}
    rule = FedA2LoRA(lam=0.5, mode="tikhonov")
    with pytest.raises(ValueError, match="no frozen projections"):
        rule.aggregate(glob, ups, 0)
    rule.bind_constants({key + "vera_A": a.float(), key + "vera_B": b.float()})
    out = rule.aggregate(glob, ups, 0)
    want_d, want_b, _ = vera_ridge(ds, bs, [1 / 6, 2 / 6, 3 / 6], a, b, lam=0.5, mode="tikhonov")
    torch.testing.assert_close(out[key + "vera_lambda_d"], want_d.float())
    torch.testing.assert_close(out[key + "vera_lambda_b"], want_b.float())
