"""The round ledger the Simulator and the Flower strategy share, on states small enough to
check by hand."""

from __future__ import annotations

import math

import pytest
import torch

from fedmllm.federation.ledger import Ledger, update_nbytes
from fedmllm.types import ClientUpdate


def _updates() -> list[ClientUpdate]:
    return [
        ClientUpdate("a", {"w": torch.tensor([1.0, 3.0])}, 4, {"loss": 0.5}),
        ClientUpdate("b", {"w": torch.tensor([3.0, 5.0])}, 4, {"loss": 0.7}),
    ]


def test_a_servers_round_entry_measures_the_shared_tensors() -> None:
    ledger = Ledger(drift=True)
    global_state = {"w": torch.zeros(2)}
    before = ledger.snapshot(global_state)
    global_state["w"] += 9.0  # a server optimiser may change the global tensors in place
    logs = ledger.record_round(
        1,
        _updates(),
        {"w": torch.tensor([2.0, 4.0])},
        before,
        server_stats={"cond": 2.0},
        aggregated=["a", "b"],
    )
    entry = ledger.history[-1]
    assert entry["round"] == 1 and entry["aggregated"] == ["a", "b"]
    assert entry["train"] == {"a": {"loss": 0.5}, "b": {"loss": 0.7}}
    assert entry["server"] == {"cond": 2.0}
    # Per element: (1, 3) and (3, 5) around (2, 4): population variance 1 each, mean 1.
    assert entry["drift"]["variance"] == pytest.approx(1.0)
    assert entry["drift"]["dist_global"]["a"] == pytest.approx(math.sqrt(2))
    assert entry["drift"]["scope"] == "shared"
    assert logs["drift/variance"] == pytest.approx(1.0)
    assert torch.equal(before["w"], torch.zeros(2))  # the snapshot is a copy


def test_full_local_states_include_private_tensors() -> None:
    ledger = Ledger(drift=True)
    private = {"a": {"p": torch.tensor([0.0])}, "b": {"p": torch.tensor([4.0])}}
    ledger.record_round(
        1,
        _updates(),
        {"w": torch.tensor([2.0, 4.0])},
        {"w": torch.zeros(2), "p": torch.zeros(1)},
        lambda u: {**private[u.client_id], **u.state},
    )
    drift = ledger.history[-1]["drift"]
    # Elements w0, w1 (variance 1 each) and p (0 and 4 around 2: variance 4): mean 6 / 3.
    assert drift["variance"] == pytest.approx(2.0)
    assert "scope" not in drift
    assert "server" not in ledger.history[-1]  # a rule without scalars adds none


def test_wall_time_goes_to_the_round_entry_and_state_round_trips() -> None:
    ledger = Ledger(drift=False)
    with pytest.raises(RuntimeError, match="end_round before any record_round"):
        ledger.end_round(1.0)
    assert ledger.snapshot({"w": torch.ones(2)}) == {}
    updates = _updates()
    ledger.count(down=10, up=update_nbytes(updates[0]))
    ledger.record_round(1, updates, {}, {})
    ledger.record_scores(1, {"a": {"em": 1.0}})
    ledger.end_round(0.25)
    assert [e.get("wall_s") for e in ledger.history] == [0.25, None]
    assert "drift" not in ledger.history[0]
    assert ledger.comm == {"up_bytes": 8, "down_bytes": 10}  # two float32 values up
    assert ledger.comm_logs() == {"comm/up_bytes": 8.0, "comm/down_bytes": 10.0}
    resumed = Ledger()
    resumed.load_state_dict(ledger.state_dict())
    ledger.count(down=1)
    assert resumed.comm == {"up_bytes": 8, "down_bytes": 10}
    assert resumed.history == ledger.history
