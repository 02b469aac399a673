"""FedAdam / FedYogi / FedAdagrad against Flower's own strategy classes, round by round."""

import io

import numpy as np
import pytest
import torch
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import strategy as flwr_strategy

from fedmllm.aggregators import FedAdagrad, FedAdam, FedYogi
from fedmllm.aggregators.server_optim import step_size
from fedmllm.types import ClientUpdate

KEYS = ["m.q_proj.lora_A.weight", "m.q_proj.lora_B.weight", "m.router.weight"]
SHAPES = [(3, 6), (4, 3), (2, 2)]
COUNTS = [5, 20, 11]

CASES = [
    # (ours, Flower's, shared hyper-parameters: Flower defaults, then other values)
    (FedAdam, flwr_strategy.FedAdam, {}),
    (FedAdam, flwr_strategy.FedAdam, {"eta": 0.03, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-3}),
    (FedYogi, flwr_strategy.FedYogi, {}),
    (FedYogi, flwr_strategy.FedYogi, {"eta": 0.2, "beta_1": 0.5, "beta_2": 0.9, "tau": 1e-6}),
    (FedAdagrad, flwr_strategy.FedAdagrad, {}),
    (FedAdagrad, flwr_strategy.FedAdagrad, {"eta": 0.02, "tau": 1e-2}),
]


def _rounds(seed: int, dtype: torch.dtype, n_rounds: int = 3):
    """Initial arrays and, per round, three clients' arrays near the current values."""
    g = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=g, dtype=dtype) for s in SHAPES]
    rounds = [
        [
            [x + 0.1 * (k + 1) * torch.randn(x.shape, generator=g, dtype=dtype) for x in init]
            for k in range(3)
        ]
        for _ in range(n_rounds)
    ]
    return init, rounds


def _flower_rounds(flwr_cls, kwargs, init, rounds, counts):
    strat = flwr_cls(initial_parameters=ndarrays_to_parameters([x.numpy() for x in init]), **kwargs)
    outs = []
    for server_round, clients in enumerate(rounds, start=1):
        results = [
            (
                None,
                FitRes(
                    Status(Code.OK, ""), ndarrays_to_parameters([x.numpy() for x in arrays]), n, {}
                ),
            )
            for arrays, n in zip(clients, counts, strict=True)
        ]
        params, _ = strat.aggregate_fit(server_round, results, [])
        outs.append([torch.from_numpy(np.asarray(a)) for a in parameters_to_ndarrays(params)])
    return outs


def _our_rounds(agg, init, rounds, counts):
    state = dict(zip(KEYS, init, strict=True))
    outs = []
    for rnd, clients in enumerate(rounds):
        updates = [
            ClientUpdate(f"c{k}", dict(zip(KEYS, arrays, strict=True)), n)
            for k, (arrays, n) in enumerate(zip(clients, counts, strict=True))
        ]
        state = agg.aggregate(state, updates, rnd)
        outs.append([state[k] for k in KEYS])
    return outs


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), CASES)
def test_matches_flower_over_three_rounds_in_float64(ours, theirs, kwargs):
    init, rounds = _rounds(0, torch.float64)
    expected = _flower_rounds(theirs, kwargs, init, rounds, COUNTS)
    got = _our_rounds(ours(**kwargs), init, rounds, COUNTS)
    for exp_round, got_round in zip(expected, got, strict=True):
        for e, o in zip(exp_round, got_round, strict=True):
            torch.testing.assert_close(o, e.to(torch.float64), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), CASES[::2])
def test_matches_flower_in_float32_and_uniform_weighting_equals_equal_counts(ours, theirs, kwargs):
    init, rounds = _rounds(1, torch.float32)
    expected = _flower_rounds(theirs, kwargs, init, rounds, [1, 1, 1])
    got = _our_rounds(ours(weighting="uniform", **kwargs), init, rounds, COUNTS)
    for exp_round, got_round in zip(expected, got, strict=True):
        for e, o in zip(exp_round, got_round, strict=True):
            assert o.dtype == torch.float32
            torch.testing.assert_close(o, e.to(torch.float32), rtol=1e-5, atol=1e-6)


def test_adam_bias_correction_modes_by_hand():
    # Kingma & Ba at step t: η √(1 − β2^t) / (1 − β1^t); Flower's FedAdam uses t + 1.
    assert step_size(0.1, 0.9, 0.99, 1, "adam") == pytest.approx(
        0.1 * (1 - 0.99) ** 0.5 / (1 - 0.9)
    )
    assert step_size(0.1, 0.9, 0.99, 1, "flower") == pytest.approx(
        0.1 * (1 - 0.99**2) ** 0.5 / (1 - 0.9**2)
    )
    assert step_size(0.1, 0.9, 0.99, 7, "none") == 0.1
    # First Adam step from m = v = 0: m = 0.1Δ, v = 0.01Δ², lr = η·√0.01/0.1 = η, so each
    # entry moves by exactly η·sign(Δ) when τ = 0.
    x = {"w": torch.zeros(3, dtype=torch.float64)}
    ups = [ClientUpdate("a", {"w": torch.tensor([2.0, -0.5, 0.0], dtype=torch.float64)}, 1)]
    out = FedAdam(eta=0.1, tau=0.0, bias_correction="adam").aggregate(x, ups, 0)
    torch.testing.assert_close(out["w"][:2], torch.tensor([0.1, -0.1], dtype=torch.float64))


@pytest.mark.parametrize("cls", [FedAdam, FedYogi, FedAdagrad])
def test_checkpointed_moments_resume_exactly(cls):
    init, rounds = _rounds(2, torch.float32)
    straight = _our_rounds(cls(), init, rounds, COUNTS)
    first = cls()
    _our_rounds(first, init, rounds[:1], COUNTS)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = cls()
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.step == 1
    state = dict(zip(KEYS, straight[0], strict=True))
    for rnd in (1, 2):
        ups = [
            ClientUpdate(f"c{k}", dict(zip(KEYS, arr, strict=True)), n)
            for k, (arr, n) in enumerate(zip(rounds[rnd], COUNTS, strict=True))
        ]
        state = resumed.aggregate(state, ups, rnd)
    for key, value in zip(KEYS, straight[-1], strict=True):
        assert torch.equal(state[key], value)
    # A fresh optimiser (lost moments) does not land on the same point.
    assert not torch.equal(
        _our_rounds(cls(), straight[0], rounds[1:], COUNTS)[-1][0], straight[-1][0]
    )


def test_rejects_heterogeneous_ranks_missing_globals_and_foreign_state():
    g = torch.Generator().manual_seed(3)
    ups = [
        ClientUpdate(
            "a",
            {KEYS[0]: torch.randn(2, 6, generator=g), KEYS[1]: torch.randn(4, 2, generator=g)},
            1,
        ),
        ClientUpdate(
            "b",
            {KEYS[0]: torch.randn(3, 6, generator=g), KEYS[1]: torch.randn(4, 3, generator=g)},
            1,
        ),
    ]
    with pytest.raises(ValueError, match=r"fedyogi.*\[2, 3\]"):
        FedYogi().aggregate({}, ups, 0)
    with pytest.raises(KeyError, match="global state lacks"):
        FedAdam().aggregate({}, ups[:1], 0)
    with pytest.raises(KeyError):
        FedAdam().load_state_dict({"step": 1, "m": {}})
    assert (
        FedAdagrad().describe()["beta_2"] == 0.0
        and FedAdam().describe()["bias_correction"] == "flower"
    )
