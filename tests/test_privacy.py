"""DP maths against hand computations and the reference libraries (Opacus, Flower)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.supercore.differential_privacy import compute_clip_model_update, compute_stdv
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from fedmllm.privacy import PrivacyConfig, privacy_config
from fedmllm.privacy.accountant import client_dp_epsilon, epsilon, noise_for_epsilon
from fedmllm.privacy.client_dp import add_noise, central_noise_std, clip_update, noise_generator
from fedmllm.privacy.dp_sgd import one_sample, private_gradient
from fedmllm.privacy.mia import loss_threshold_auc, per_sample_losses


def _opacus_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    """Opacus's own step API, one call per step."""
    acc = RDPAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    return acc.get_epsilon(delta)


@pytest.mark.parametrize(
    ("sigma", "q", "steps"), [(1.0, 0.5, 2), (0.8, 4 / 300, 150), (2.0, 1.0, 7)]
)
def test_epsilon_equals_opacus_step_by_step(sigma, q, steps):
    assert epsilon(sigma, q, steps, 1e-5) == pytest.approx(_opacus_epsilon(sigma, q, steps, 1e-5))


def test_epsilon_edge_cases_and_target_noise():
    assert epsilon(1.0, 0.1, 0, 1e-5) == 0.0
    assert epsilon(0.0, 0.1, 3, 1e-5) == math.inf
    sigma = noise_for_epsilon(3.0, 0.05, 100, 1e-5)
    assert sigma == get_noise_multiplier(
        target_epsilon=3.0, target_delta=1e-5, sample_rate=0.05, steps=100, accountant="rdp"
    )
    assert epsilon(sigma, 0.05, 100, 1e-5) <= 3.0 + 1e-9
    assert epsilon(sigma, 0.05, 100, 1e-5) > 2.9  # not needlessly noisy


def test_local_client_dp_counts_sensitivity_two_s():
    """Replace-one adjacency in local DP: σ acts as σ/2 at q = 1."""
    assert client_dp_epsilon(2.0, "client", 0.3, 5, 1e-5) == pytest.approx(
        _opacus_epsilon(1.0, 1.0, 5, 1e-5)
    )
    assert client_dp_epsilon(2.0, "server", 0.3, 5, 1e-5) == pytest.approx(
        _opacus_epsilon(2.0, 0.3, 5, 1e-5)
    )


def test_per_sample_clipping_by_hand():
    """Two samples: g1 = (3, 4) (norm 5) is scaled to norm 1, g2 = (0.3, 0.4) stays."""
    g1, g2 = [torch.tensor([3.0, 4.0])], [torch.tensor([0.3, 0.4])]
    out = private_gradient([g1, g2], clip=1.0, noise_multiplier=0.0, expected_batch=2)
    expected = (torch.tensor([0.6, 0.8]) + torch.tensor([0.3, 0.4])) / 2
    assert torch.allclose(out[0], expected, atol=1e-6)
    # a gradient split over two tensors is clipped by its joint norm (13 here)
    g3 = [torch.tensor([3.0, 4.0]), torch.tensor([12.0])]
    out = private_gradient([g3], clip=2.0, noise_multiplier=0.0, expected_batch=1)
    assert torch.allclose(torch.cat(out), torch.tensor([6.0, 8.0, 24.0]) / 13, atol=1e-6)


def test_dp_sgd_noise_has_std_sigma_c_over_b():
    torch.manual_seed(0)
    zeros = [[torch.zeros(200_000)]]
    out = private_gradient(zeros, clip=0.5, noise_multiplier=2.0, expected_batch=4)[0]
    assert out.mean().item() == pytest.approx(0.0, abs=0.01)
    assert out.std().item() == pytest.approx(2.0 * 0.5 / 4, rel=0.02)


def test_client_update_clip_matches_flower():
    ref = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([[0.5]])}
    new = {"a": torch.tensor([4.0, 5.0]), "b": torch.tensor([[12.5]])}  # delta (3, 4, 12): 13
    clipped, norm = clip_update(new, ref, 2.0)
    assert norm == pytest.approx(13.0)
    flower = [new["a"].numpy().copy(), new["b"].numpy().copy()]
    compute_clip_model_update(flower, [ref["a"].numpy(), ref["b"].numpy()], 2.0)
    assert np.allclose(clipped["a"].numpy(), flower[0], atol=1e-6)
    assert np.allclose(clipped["b"].numpy(), flower[1], atol=1e-6)
    delta = torch.cat([(clipped[k] - ref[k]).flatten() for k in ("a", "b")])
    assert delta.norm().item() == pytest.approx(2.0, rel=1e-5)
    same, _ = clip_update(new, ref, 20.0)  # under the bound: unchanged
    assert all(torch.equal(same[k], new[k]) for k in new)


def test_central_noise_on_the_mean_is_flowers_stdv():
    """m uniformly weighted updates, each noised by the server: the mean's noise std is
    Flower's compute_stdv(σ, S, m) = σS/m."""
    m, sigma, clip = 4, 1.5, 0.2
    std = central_noise_std(clip, sigma, [1 / m] * m)
    gen = noise_generator(7)
    noised = [add_noise({"x": torch.zeros(100_000)}, std, gen)["x"] for _ in range(m)]
    mean = torch.stack(noised).mean(0)
    assert mean.std().item() == pytest.approx(compute_stdv(sigma, clip, m), rel=0.02)
    # sample weighting: the mean's noise is σ·S·max w
    w = [0.5, 0.25, 0.25]
    assert central_noise_std(clip, sigma, w) * math.sqrt(sum(x * x for x in w)) == pytest.approx(
        sigma * clip * 0.5
    )


def test_membership_auc_by_hand():
    members, held_out = [0.1, 0.2, 0.6], [0.3, 0.5, 0.6]
    # pairs with member loss < held-out loss: 3 + 3 + 0, one tie (0.6, 0.6): (6 + 0.5) / 9
    assert loss_threshold_auc(members, held_out) == pytest.approx(6.5 / 9)
    assert loss_threshold_auc([1.0], [2.0]) == 1.0
    assert loss_threshold_auc([2.0], [1.0]) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        loss_threshold_auc([], [1.0])


def test_per_sample_losses_equal_the_models_own_loss():
    """Each row's loss equals torch's cross_entropy on that row alone (the HF LM loss)."""
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 2, -100, -100]])
    ours = per_sample_losses(logits, labels)
    for i in range(2):
        ref = torch.nn.functional.cross_entropy(logits[i, :-1].double(), labels[i, 1:])
        assert ours[i].item() == pytest.approx(ref.item())


def test_one_sample_slices_tensors_and_lists():
    batch = {"input_ids": torch.arange(6).view(3, 2), "samples": ["a", "b", "c"], "k": 1}
    one = one_sample(batch, 1, 3)
    assert one["input_ids"].tolist() == [[2, 3]] and one["samples"] == ["b"] and one["k"] == 1


def test_privacy_config_refuses_bad_options():
    assert not privacy_config(None).enabled
    assert privacy_config({"mode": "dp_sgd", "clip": 0.5}) == PrivacyConfig("dp_sgd", 0.5)
    with pytest.raises(ValueError, match="privacy.sigma is not a privacy option"):
        privacy_config({"mode": "dp_sgd", "sigma": 1.0})
    with pytest.raises(ValueError, match="privacy.mode='dp'"):
        privacy_config({"mode": "dp"})
    with pytest.raises(ValueError, match="privacy.noise_at"):
        privacy_config({"mode": "dp_client", "noise_at": "both"})
