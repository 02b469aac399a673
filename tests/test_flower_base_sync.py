"""The server keeps only the base-weight deltas some connected node lacks; a node too far behind
receives the server's whole base instead, and ends bit for bit where the simulator's base is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")

from flower_helpers import flower_run_config, fresh_runtimes  # noqa: E402, F401
from safetensors.torch import load_file  # noqa: E402

from fedmllm.build import build_components, make_simulator  # noqa: E402
from fedmllm.deploy.flower.base_sync import BaseSync  # noqa: E402
from fedmllm.deploy.flower.client_app import BASE_WEIGHTS, make_client_app  # noqa: E402
from fedmllm.deploy.flower.local_grid import LocalGrid  # noqa: E402
from fedmllm.deploy.flower.resume import SERVER_CHECKPOINT  # noqa: E402
from fedmllm.deploy.flower.server_app import GLOBAL_ADAPTER, run_server  # noqa: E402

CLIENTS = ("vqa", "report", "detection")


class DictBase:
    """A method stand-in whose 'engine' is one dict of base weights."""

    def __init__(self) -> None:
        self.weights = {"w": torch.zeros(2)}

    def add_to_base_weights(self, deltas):
        for k, d in deltas.items():
            self.weights[k] = self.weights[k] + d

    def base_weights(self, keys):
        return {k: self.weights[k].clone() for k in keys}

    def load_base_weights(self, state):
        self.weights.update({k: v.clone() for k, v in state.items()})


def delta(x: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((2,), x)}


def test_kept_deltas_and_whole_base_by_hand():
    sync = BaseSync(DictBase())
    for r in (1, 2, 3):
        sync.add(r, delta(float(r)))
    sync.add(4, {})  # a round without deltas changes nothing
    assert sync.round == 3 and [r for r, _ in sync.deltas] == [1, 2, 3]
    deltas, base = sync.for_node(1)
    assert [r for r, _ in deltas] == [2, 3] and base == {}
    assert sync.for_node(3) == ([], {})
    sync.drop_applied([2, 3])  # the connected nodes have applied rounds 1-2
    assert [r for r, _ in sync.deltas] == [3] and sync.dropped_through == 2
    assert sync.nbytes() == 2 * 4
    deltas, base = sync.for_node(2)
    assert [r for r, _ in deltas] == [3] and base == {}
    deltas, base = sync.for_node(0)  # a node that lacks dropped deltas: the whole base
    assert deltas == [] and torch.equal(base["w"], torch.full((2,), 6.0))  # 1 + 2 + 3
    # The checkpoint round trip restores the server's base too.
    restored = BaseSync(DictBase())
    restored.load_state_dict(sync.state_dict())
    assert restored.for_node(2)[0][0][0] == 3
    assert torch.equal(restored.for_node(0)[1]["w"], torch.full((2,), 6.0))


def test_a_restarted_node_without_its_base_gets_the_whole_base_and_ends_exact(
    make_cfg, cache_dir, tmp_path
):
    """FedEx-LoRA (residuals folded into the base every round): after round 2 the detection
    node restarts (a new node id) and has lost its base file; the server, which keeps only
    the deltas the connected nodes lack, sends it the whole base. The run ends bit for bit
    where the simulator ends."""
    extra = ["federation.rounds=3", "federation.eval_every=0"]
    config = flower_run_config(cache_dir, tmp_path, "fedmed_fedex", *extra)
    nodes = [{"partition-id": i, "state-dir": str(tmp_path / "nodes")} for i in range(3)]
    grid = LocalGrid(make_client_app(config), nodes, config, fresh_process=True)
    pull = grid.pull_messages

    def restart_detection_after_round_2(ids):
        replies = list(pull(ids))
        if any(r.metadata.group_id == "2" for r in replies):
            (tmp_path / "nodes" / "run_1" / "base_weights" / "detection.pt").unlink()
            grid.restart(3)
        return replies

    grid.pull_messages = restart_detection_after_round_2
    results = run_server(grid, config)
    whole = [m for m in grid.handled if BASE_WEIGHTS in m.content]
    assert len(whole) == 1 and whole[0].content["config"]["client-id"] == "detection"
    assert [h["aggregated"] for h in results["history"] if "aggregated" in h] == [list(CLIENTS)] * 3
    cfg = make_cfg("fedmed_fedex", *extra)
    c = build_components(cfg)
    sim, _ = make_simulator(cfg, c, Path(cfg.paths.output_dir))
    sim.fit()
    flower = load_file(tmp_path / "flower" / GLOBAL_ADAPTER)
    for k, v in sim.global_state.items():
        assert torch.equal(flower[k], v), k
    # Every node's base equals the simulator's engine base, the restarted one's included.
    sim_base = sim.method.base_weights(sorted(sim.base_keys))
    for cid in CLIENTS:
        saved = torch.load(tmp_path / "nodes" / "run_1" / "base_weights" / f"{cid}.pt")
        assert saved["round"] == 3
        for k, v in sim_base.items():
            assert torch.equal(saved["weights"][k], v), (cid, k)
    # At the end the server keeps no delta: every connected node has applied all of them.
    ckpt = torch.load(tmp_path / "flower" / SERVER_CHECKPOINT, weights_only=False)
    assert ckpt["base"]["deltas"] == [] and ckpt["base"]["dropped_through"] == 3
