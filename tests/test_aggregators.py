"""Server rules on three small tensors, values worked out by hand."""

import pytest
import torch

from fedmllm.aggregators import FedAvg, NoAggregation
from fedmllm.aggregators.functional import client_weights, weighted_mean
from fedmllm.types import ClientUpdate


def _update(cid: str, value: float, n: int) -> ClientUpdate:
    return ClientUpdate(
        cid,
        {
            "w.lora_A.weight": torch.full((2, 3), value),
            "w.lora_B.weight": torch.full((3, 2), -value),
        },
        n,
    )


def test_client_weights_by_samples_and_uniform():
    assert torch.allclose(client_weights([1, 3]), torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert torch.allclose(
        client_weights([1, 3], "uniform"), torch.tensor([0.5, 0.5], dtype=torch.float64)
    )


@pytest.mark.parametrize("bad", [[], [0, 0], [-1, 2]])
def test_client_weights_rejects_degenerate_counts(bad):
    with pytest.raises(ValueError):
        client_weights(bad)


def test_weighted_mean_matches_hand_computation():
    states = [
        {"x": torch.tensor([1.0, 2.0])},
        {"x": torch.tensor([3.0, 6.0])},
        {"x": torch.tensor([5.0, 10.0])},
    ]
    out = weighted_mean(states, torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    # 0.5*1 + 0.25*3 + 0.25*5 = 2.5 ; 0.5*2 + 0.25*6 + 0.25*10 = 5.0
    assert torch.equal(out["x"], torch.tensor([2.5, 5.0]))


def test_weighted_mean_rejects_mismatched_keys_and_shapes():
    with pytest.raises(KeyError):
        weighted_mean([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}], client_weights([1, 1]))
    with pytest.raises(ValueError):
        weighted_mean([{"a": torch.zeros(1)}, {"a": torch.zeros(2)}], client_weights([1, 1]))


def test_fedavg_weights_by_samples_unless_uniform():
    updates = [_update("a", 1.0, 10), _update("b", 4.0, 30)]
    out = FedAvg().aggregate({}, updates, 0)
    assert torch.allclose(out["w.lora_A.weight"], torch.full((2, 3), 0.25 * 1 + 0.75 * 4))
    assert torch.allclose(out["w.lora_B.weight"], torch.full((3, 2), -(0.25 * 1 + 0.75 * 4)))
    uni = FedAvg(weighting="uniform").aggregate({}, updates, 0)
    assert torch.allclose(uni["w.lora_A.weight"], torch.full((2, 3), 2.5))


def test_fedavg_of_identical_clients_is_the_client_and_empty_round_keeps_global():
    upd = _update("a", 0.3, 5)
    out = FedAvg().aggregate({}, [upd, _update("b", 0.3, 50)], 0)
    assert torch.equal(out["w.lora_A.weight"], upd.state["w.lora_A.weight"])
    glob = {"w.lora_A.weight": torch.ones(2, 3)}
    assert torch.equal(FedAvg().aggregate(glob, [], 3)["w.lora_A.weight"], torch.ones(2, 3))


def test_no_aggregation_ignores_clients_and_stateless_rules_refuse_foreign_state():
    glob = {"k": torch.ones(1)}
    assert torch.equal(
        NoAggregation().aggregate(glob, [_update("a", 9.0, 1)], 0)["k"], torch.ones(1)
    )
    with pytest.raises(KeyError):
        FedAvg().load_state_dict({"m": torch.zeros(1)})
    with pytest.raises(ValueError):
        FedAvg(weighting="median")
