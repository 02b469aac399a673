"""Client-side baseline rules on the toy engine, each against an independent computation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from toy_engine import FakeFabric, lora_kwargs, toy_batches, toy_engine

from fedmllm.lora.layers import LoRALinear
from fedmllm.methods import FedSALoRAMethod, FFALoRAMethod, FRLoRAMethod, LoRAMethod
from fedmllm.methods.addons import CK_PREFIX, ProximalTerm, proximal_term
from fedmllm.methods.frlora import pissa_factors
from fedmllm.methods.local_loop import step_loss


def _randomise_lora(method, seed: int, scale: float = 0.3) -> None:
    """Non-zero A and B so that gradients reach every factor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in method.trainable_parameters().items():
            p.copy_(scale * torch.randn(p.shape, generator=g))


# ----------------------------------------------------------------------------- FedProx
def test_fedprox_gradient_is_task_gradient_plus_mu_times_distance_to_global():
    mu = 0.1
    method = LoRAMethod(toy_engine(), proximal_mu=mu, **lora_kwargs())
    _randomise_lora(method, 0)
    (prox,) = method.addons
    assert isinstance(prox, ProximalTerm)
    prox.begin_local(method.trainable_parameters())  # snapshots the global parameters
    anchor = {k: p.detach().clone() for k, p in method.trainable_parameters().items()}
    with torch.no_grad():  # local training has moved the parameters
        for p in method.trainable_parameters().values():
            p.add_(0.05 * torch.randn_like(p))
    batch = next(toy_batches(1))
    params = method.trainable_parameters()

    total, _ = step_loss(method, FakeFabric(), batch, 0)
    g_total = torch.autograd.grad(total, list(params.values()))
    plain = method.training_step(batch)
    g_plain = torch.autograd.grad(plain, list(params.values()))

    by_hand = sum(((p - anchor[k]) ** 2).sum() for k, p in params.items()) * mu / 2
    assert total.item() == pytest.approx(plain.item() + by_hand.item(), rel=1e-6)
    for (k, p), gt, gp in zip(params.items(), g_total, g_plain, strict=True):
        expected = mu * (p.detach() - anchor[k])
        assert expected.abs().max() > 1e-4  # the term is really active
        torch.testing.assert_close(gt - gp, expected, rtol=1e-4, atol=1e-7)


def test_proximal_term_from_detached_current_params_would_have_no_gradient():
    # The public-code pitfall, shown on the helper: anchoring on the live values' copies
    # gives a zero term and zero gradient, anchoring on the global gives mu*(θ − θ_g).
    p = torch.tensor([1.0, -2.0], requires_grad=True)
    g_pitfall = torch.autograd.grad(proximal_term({"p": p}, {"p": p.detach().clone()}, 0.5), p)
    g_right = torch.autograd.grad(proximal_term({"p": p}, {"p": torch.zeros(2)}, 0.5), p)
    assert torch.equal(g_pitfall[0], torch.zeros(2))
    assert torch.allclose(g_right[0], 0.5 * p.detach())


# ----------------------------------------------------------------------------- SCAFFOLD
@pytest.mark.parametrize("rates", [[0.1, 0.1, 0.1], [0.2, 0.05, 0.1]])
def test_scaffold_local_update_matches_a_hand_written_loop(rates):
    method = LoRAMethod(toy_engine(), scaffold=True, weight_decay=0.0, **lora_kwargs())
    _randomise_lora(method, 1)
    params = method.trainable_parameters()
    g = torch.Generator().manual_seed(2)
    c = {k: 0.5 * torch.randn(p.shape, generator=g) for k, p in params.items()}
    c_k = {k: 0.5 * torch.randn(p.shape, generator=g) for k, p in params.items()}
    method.begin_client("c0", c)
    method.load_adapter_state({CK_PREFIX + k: v for k, v in c_k.items()})
    reference = copy.deepcopy(method.model)  # the same start, trained by hand below
    ref_params = {k: p for k, p in reference.named_parameters() if k in params}
    x = {k: p.detach().clone() for k, p in params.items()}

    opt = torch.optim.SGD(list(params.values()), lr=1.0)
    method.local_update(FakeFabric(), toy_batches(3), 3, opt, lambda i: rates[i])

    batches = toy_batches(3)
    for eta in rates:  # θ ← θ − η (∇f(θ) + c − c_k), SGD and correction fused
        loss = reference(**next(batches)).loss
        grads = torch.autograd.grad(loss, list(ref_params.values()))
        with torch.no_grad():
            for (k, p), grad in zip(ref_params.items(), grads, strict=True):
                p.sub_(eta * (grad + c[k] - c_k[k]))
    state = method.adapter_state()
    extras = method.client_extras()
    for k, p in params.items():
        torch.testing.assert_close(p.detach(), ref_params[k].detach(), rtol=1e-5, atol=1e-6)
        c_k_new = c_k[k] - c[k] + (x[k] - ref_params[k].detach()) / sum(rates)
        torch.testing.assert_close(state[CK_PREFIX + k], c_k_new, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(extras[k], c_k_new - c_k[k], rtol=1e-4, atol=1e-5)
    assert method.shared_keys(state) == sorted(params)  # c_k never travels
    assert method.private_keys(state) == sorted(CK_PREFIX + k for k in params)


def test_scaffold_with_zero_controls_is_plain_local_training():
    # c = c_k = 0 (the start): the correction is a no-op, so it equals LoRAMethod's loop.
    plain = LoRAMethod(toy_engine(), **lora_kwargs())
    scaffold = LoRAMethod(toy_engine(), scaffold=True, **lora_kwargs())
    for m in (plain, scaffold):
        _randomise_lora(m, 4)
        m.begin_client("c0", {})
        m.local_update(FakeFabric(), toy_batches(5), 2, m.configure_optimizers(), lambda i: 0.01)
    for k, p in plain.trainable_parameters().items():
        assert torch.equal(p, scaffold.trainable_parameters()[k])


# ----------------------------------------------------------------------------- FFA / FedSA
def test_ffa_a_is_shared_seeded_frozen_and_only_b_travels():
    a = FFALoRAMethod(toy_engine(seed=0), a_seed=7, **lora_kwargs())
    torch.manual_seed(123)  # a different process RNG must not change A
    b = FFALoRAMethod(toy_engine(seed=1), a_seed=7, **lora_kwargs())
    state_a, state_b = a.adapter_state(), b.adapter_state()
    a_keys = [k for k in state_a if k.endswith("lora_A.weight")]
    for k in a_keys:
        assert torch.equal(state_a[k], state_b[k])  # every client derives the same A
    before = a.adapter_state()
    opt = a.configure_optimizers()
    assert all(not p.requires_grad for n, p in a.model.named_parameters() if "lora_A" in n)
    a.local_update(FakeFabric(), toy_batches(0), 3, opt, lambda i: 0.05)
    after = a.adapter_state()
    for k in a_keys:
        assert torch.equal(before[k], after[k])  # A never changes
    b_keys = [k for k in after if k.endswith("lora_B.weight")]
    assert any(not torch.equal(before[k], after[k]) for k in b_keys)  # B trained
    assert a.shared_keys(after) == sorted(b_keys)
    assert a.private_keys(after) == []


def test_fedsa_shares_a_and_keeps_b():
    m = FedSALoRAMethod(toy_engine(), **lora_kwargs())
    state = m.adapter_state()
    assert m.shared_keys(state) == sorted(k for k in state if k.endswith("lora_A.weight"))
    assert m.private_keys(state) == sorted(k for k in state if k.endswith("lora_B.weight"))


# ----------------------------------------------------------------------------- FRLoRA
def test_pissa_factors_give_the_best_rank_r_approximation():
    w = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    a0, b0 = pissa_factors(w, r=2, scaling=2.5)
    u, s, vt = np.linalg.svd(w.numpy().astype(np.float64), full_matrices=False)
    best = (u[:, :2] * s[:2]) @ vt[:2]  # Eckart–Young, from NumPy's SVD
    np.testing.assert_allclose((2.5 * b0 @ a0).numpy(), best, rtol=1e-5, atol=1e-5)
    residual_sv = np.linalg.svd((w - 2.5 * b0 @ a0).numpy(), compute_uv=False)
    np.testing.assert_allclose(residual_sv[:3], s[2:], rtol=1e-4, atol=1e-5)


def test_frlora_init_moves_principal_part_into_lora_without_changing_outputs():
    engine = toy_engine()
    batch = next(toy_batches(0))
    before = engine.model(**batch).logits
    w0 = {n: m.weight.clone() for n, m in engine.model.named_modules() if n.endswith("_proj")}
    method = FRLoRAMethod(engine, **lora_kwargs())
    after = engine.model(**batch).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    for name, layer in method.lora_layers():
        base = layer.base_layer.weight
        recon = base + layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
        torch.testing.assert_close(recon, w0[name], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(base, w0[name])  # the base really changed


# ----------------------------------------------------------------------------- ranks
def test_client_rank_uses_first_components_scaling_and_true_size_factors():
    m = LoRAMethod(toy_engine(), client_ranks={"small": 1}, **lora_kwargs(r=3, alpha=6.0))
    _randomise_lora(m, 0)
    full = m.adapter_state()
    m.begin_client("small", {})
    layer = next(layer for _, layer in m.lora_layers())
    assert layer.scaling == pytest.approx(6.0 / 1)
    m.load_adapter_state({k: v[:1] if k.endswith("lora_A.weight") else v for k, v in full.items()})
    for _, lyr in m.lora_layers():  # components beyond rank 1 are zero in the engine
        assert torch.count_nonzero(lyr.lora_A.weight[1:]) == 0
        assert torch.count_nonzero(lyr.lora_B.weight[:, 1:]) == 0
    m.local_update(FakeFabric(), toy_batches(0), 3, m.configure_optimizers(), lambda i: 0.05)
    for _, lyr in m.lora_layers():  # ... and stay zero through training
        assert torch.count_nonzero(lyr.lora_A.weight[1:]) == 0
        assert torch.count_nonzero(lyr.lora_B.weight[:, 1:]) == 0
    sent = m.adapter_state()
    for k, v in sent.items():
        assert (v.shape[0] if k.endswith("lora_A.weight") else v.shape[1]) == 1
    m.begin_client("other", {})  # not listed: the engine's rank
    assert layer.scaling == pytest.approx(6.0 / 3)
    assert m.client_rank("other") == 3


def test_client_ranks_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="client_ranks"):
        LoRAMethod(toy_engine(), client_ranks={"a": 4}, **lora_kwargs(r=2))


def test_base_weight_hooks_add_read_and_restore():
    m = LoRAMethod(toy_engine(), **lora_kwargs())
    name, layer = m.lora_layers()[0]
    key = f"{name}.base_layer.weight"
    w0 = layer.base_layer.weight.clone()
    delta = torch.randn_like(w0)
    m.add_to_base_weights({key: delta})
    torch.testing.assert_close(m.base_weights([key])[key], w0 + delta)
    m.load_base_weights({key: w0})
    assert torch.equal(layer.base_layer.weight, w0)
    with pytest.raises(KeyError, match="not base weights"):
        m.add_to_base_weights({"nope.base_layer.weight": delta})
    with pytest.raises(ValueError, match="shape mismatch"):
        m.add_to_base_weights({key: delta[:1]})
    assert isinstance(layer, LoRALinear)


def test_scaffold_server_averages_models_and_moves_c_by_mean_delta_over_all_clients():
    from fedmllm.aggregators.scaffold import Scaffold
    from fedmllm.types import ClientUpdate

    agg = Scaffold(num_clients=4)
    s1, s2 = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, -2.0])}
    d1, d2 = {"w": torch.tensor([0.4, 0.0])}, {"w": torch.tensor([0.4, 0.8])}
    ups = [ClientUpdate("a", s1, 1, extras=d1), ClientUpdate("b", s2, 3, extras=d2)]
    out = agg.aggregate({"w": torch.zeros(2)}, ups, 0)
    torch.testing.assert_close(out["w"], torch.tensor([0.25 * 1 + 0.75 * 3, 0.25 * 2 - 0.75 * 2]))
    torch.testing.assert_close(agg.broadcast_extras()["w"], torch.tensor([0.8 / 4, 0.8 / 4]))
    agg.aggregate(out, ups[:1], 1)  # c accumulates: + 0.4/4 on the first entry
    torch.testing.assert_close(agg.c["w"], torch.tensor([0.3, 0.2]))
    fresh = Scaffold(num_clients=4)
    fresh.load_state_dict(agg.state_dict())
    assert torch.equal(fresh.broadcast_extras()["w"], agg.c["w"])
    with pytest.raises(ValueError, match="no control-variate delta"):
        agg.aggregate(out, [ClientUpdate("a", s1, 1)], 2)


def test_composition_root_checks_client_ranks_and_fills_scaffold_client_count():
    from fedmllm.aggregators.scaffold import Scaffold
    from fedmllm.build import _bind_federation

    typo = LoRAMethod(toy_engine(), client_ranks={"vqa": 2, "vqq": 1}, **lora_kwargs(r=3))
    with pytest.raises(ValueError, match=r"\['vqq'\].*\['vqa', 'report'\]"):
        _bind_federation(typo, None, ["vqa", "report"])
    agg, fixed = Scaffold(), Scaffold(num_clients=7)
    for a in (agg, fixed):
        _bind_federation(LoRAMethod(toy_engine(), **lora_kwargs()), a, ["a", "b", "c"])
    assert (agg.num_clients, fixed.num_clients) == (3, 7)
