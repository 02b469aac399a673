"""The Flower ServerApp/ClientApp logic on in-process nodes (LocalGrid, no Ray): parity with
the simulator when every message runs in a fresh process, what a reply carries, private state
on the node, rejected and missing replies."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")

from flower_helpers import flower_run_config, fresh_runtimes  # noqa: E402, F401
from flwr.app import Message  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fedmllm.build import build_components, make_simulator  # noqa: E402
from fedmllm.deploy.flower import node as node_module  # noqa: E402
from fedmllm.deploy.flower.client_app import (  # noqa: E402
    EXTRAS,
    UPDATE,
    ClientHandlers,
    make_client_app,
)
from fedmllm.deploy.flower.local_grid import LocalGrid  # noqa: E402
from fedmllm.deploy.flower.records import get_state, put_state  # noqa: E402
from fedmllm.deploy.flower.server_app import GLOBAL_ADAPTER, run_server  # noqa: E402

CLIENTS = ("vqa", "report", "detection")  # fedmed_synth's clients, in partition order


def local_grid(app, config: dict, state_dir: Path, fresh: bool = False) -> LocalGrid:
    nodes = [{"partition-id": i, "state-dir": str(state_dir)} for i in range(len(CLIENTS))]
    return LocalGrid(app, nodes, config, fresh_process=fresh)


def simulator_global(make_cfg, *overrides: str) -> dict[str, torch.Tensor]:
    cfg = make_cfg(*overrides)
    c = build_components(cfg)
    sim, _ = make_simulator(cfg, c, Path(cfg.paths.output_dir))
    sim.fit()
    return sim.global_state


def test_mole_on_nodes_rebuilt_every_message_equals_the_simulator(make_cfg, cache_dir, tmp_path):
    """Routed experts, routers and AdamW moments live only in each node's state dir, the
    ClientApp is rebuilt for every message, and two rounds still end bit for bit where the
    in-process simulator ends (same seed)."""
    extra = ("federation.rounds=2", "federation.eval_every=0", "compare_with=null")
    config = flower_run_config(cache_dir, tmp_path, "fedmed_mole", *extra)
    grid = local_grid(make_client_app(config), config, tmp_path / "nodes", fresh=True)
    results = run_server(grid, config)
    flower = load_file(tmp_path / "flower" / GLOBAL_ADAPTER)
    reference = simulator_global(make_cfg, "fedmed_mole", *extra)
    assert flower.keys() == reference.keys()
    for k in reference:
        assert torch.equal(flower[k], reference[k]), k
    assert results["deploy"]["rejected_replies"] == results["deploy"]["failed_replies"] == 0
    # every client's private state was written on its node, none of it came to the server
    stored = sorted(p.stem for p in (tmp_path / "nodes").glob("run_1/clients/*.pt"))
    assert stored == sorted(CLIENTS)


@pytest.mark.parametrize(
    "privacy",
    [
        (),
        ("privacy=dp_sgd",),
        ("privacy=dp_client",),
        ("privacy=dp_client", "privacy.noise_at=client"),
    ],
    ids=["none", "dp_sgd", "dp_client_central", "dp_client_local"],
)
def test_reply_holds_exactly_the_shared_tensors_and_private_ones_stay_on_the_node(
    cache_dir, tmp_path, privacy
):
    config = flower_run_config(cache_dir, tmp_path, "fedmed_mole", "compare_with=null", *privacy)
    grid = local_grid(make_client_app(config), config, tmp_path / "nodes")
    replies: list[Message] = []
    original_pull = grid.pull_messages

    def spy(ids):
        out = list(original_pull(ids))
        replies.extend(r for r in out if r.metadata.message_type == "train")
        return out

    grid.pull_messages = spy
    run_server(grid, config)
    runtime = next(iter(node_module._RUNTIMES.values()))
    method = runtime.trainer.method
    assert len(replies) == len(CLIENTS)
    for reply in replies:
        cid = str(reply.content["config"]["client-id"])
        sent = set(get_state(reply.content, UPDATE))
        private, _ = runtime.trainer.store.get(cid)
        full = {**runtime.trainer.initial_state, **private}
        assert sent == set(method.shared_keys(full))
        assert private and not sent & set(private)  # routed experts and routers stayed home
        assert any(".experts." in k or "router" in k for k in private)
        if privacy == ("privacy=dp_sgd",):  # the DP step count is the client's own
            assert "dp_sgd.steps" in private and "dp_sgd.steps" not in sent


def _poisoning(config: dict, victim: str, record: str, spoil):
    """A ClientApp whose ``victim`` client sends ``spoil(state)`` in place of its ``record``
    (the update or the extras)."""
    handlers = ClientHandlers(config)

    def train(msg: Message, context) -> Message:
        reply = handlers.train(msg, context)
        if reply.content["config"]["client-id"] == victim:
            put_state(reply.content, record, spoil(get_state(reply.content, record)))
        return reply

    app = ClientApp()
    app.query()(handlers.hello)
    app.train()(train)
    app.evaluate()(handlers.evaluate)
    return app


def _first(change):
    """Apply ``change`` to the first tensor (by key) of a state."""

    def spoil(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        key = sorted(state)[0]
        return {**state, key: change(state[key].clone())}

    return spoil


def _with_nan(t: torch.Tensor) -> torch.Tensor:
    t.view(-1)[0] = float("nan")
    return t


def _one_row_short(t: torch.Tensor) -> torch.Tensor:
    return t[:-1]


def _stray_key(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {**state, "stray": torch.zeros(3)}


@pytest.mark.parametrize(
    ("experiment", "record", "spoil", "reason"),
    [
        ("fedmed_fedavg", UPDATE, _first(_with_nan), "NaN"),
        ("fedmed_fedavg", UPDATE, _first(_one_row_short), "update .* has shape"),
        ("fedmed_fedavg", EXTRAS, _stray_key, "extras has 1 unexpected keys"),
        ("fedmed_scaffold", EXTRAS, _first(_one_row_short), "extras .* has shape"),
        ("fedmed_scaffold", EXTRAS, _first(_with_nan), "extras .* NaN"),
    ],
    ids=["nan", "shape", "stray-extra", "scaffold-dc-shape", "scaffold-dc-nan"],
)
def test_a_bad_reply_is_rejected_logged_and_the_others_are_averaged(
    experiment, record, spoil, reason, cache_dir, tmp_path, caplog
):
    config = flower_run_config(cache_dir, tmp_path, experiment, **{"min-replies": 2})
    grid = local_grid(_poisoning(config, "report", record, spoil), config, tmp_path / "nodes")
    sent: dict[str, dict[str, torch.Tensor]] = {}
    original_pull = grid.pull_messages

    def spy(ids):
        out = list(original_pull(ids))
        for r in out:
            if r.metadata.message_type == "train":
                sent[str(r.content["config"]["client-id"])] = get_state(r.content, UPDATE)
        return out

    grid.pull_messages = spy
    with caplog.at_level(logging.WARNING, logger="fedmllm.deploy.flower.strategy"):
        results = run_server(grid, config)
    round1 = results["history"][0]
    assert round1["aggregated"] == ["vqa", "detection"]
    assert re.search(reason, " ".join(round1["rejected"]["report"]))
    records = [r for r in caplog.records if "rejected the update of client report" in r.message]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert re.search(reason, records[0].getMessage())
    # FedAvg of the two sound updates (SCAFFOLD's model step too), by hand: weights
    # n_k / (n_vqa + n_det), both n_k = 8
    glob_ = load_file(tmp_path / "flower" / GLOBAL_ADAPTER)
    for k, v in glob_.items():
        expected = (sent["vqa"][k].double() + sent["detection"][k].double()) / 2
        assert torch.allclose(v.double(), expected, atol=1e-7), k
        assert torch.isfinite(v).all()


def test_round_goes_on_without_a_dead_node_if_enough_replies_arrive(cache_dir, tmp_path):
    config = flower_run_config(
        cache_dir,
        tmp_path,
        "fedmed_fedavg",
        **{"min-replies": 2, "round-timeout": 2.0, "eval-timeout": 2.0},
    )
    grid = local_grid(make_client_app(config), config, tmp_path / "nodes")
    original = grid.push_messages

    def kill_detection_on_train(messages):
        messages = list(messages)
        if any(m.metadata.message_type == "train" for m in messages):
            grid.dead.add(3)  # partition 2: the detection client dies after the hello
        return original(messages)

    grid.push_messages = kill_detection_on_train
    results = run_server(grid, config)
    round1 = results["history"][0]
    assert round1["aggregated"] == ["vqa", "report"]
    assert "no reply" in round1["failed"]["detection"]
    assert set(results["clients"]) == {"vqa", "report"}  # the dead one has no final scores


def test_too_few_replies_fail_the_round_with_the_reasons(cache_dir, tmp_path):
    config = flower_run_config(
        cache_dir, tmp_path, "fedmed_fedavg", **{"round-timeout": 1.0, "eval-timeout": 1.0}
    )
    grid = local_grid(make_client_app(config), config, tmp_path / "nodes")
    original = grid.push_messages

    def kill(messages):
        messages = list(messages)
        if any(m.metadata.message_type == "train" for m in messages):
            grid.dead.add(2)
        return original(messages)

    grid.push_messages = kill
    with pytest.raises(RuntimeError, match=r"round 1: 2 valid replies of 3 .* 3 needed.*report"):
        run_server(grid, config)
