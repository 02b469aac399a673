"""Resuming a Flower run: the server dies in the middle of round 2 (after its nodes trained),
a new run continues from the server's checkpoint with the nodes' state, and ends where an
uninterrupted run ends. In-process nodes (LocalGrid) with the node runtime rebuilt for every
message, as a SuperNode's ClientApp process is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")

from flower_helpers import flower_run_config, fresh_runtimes  # noqa: E402, F401
from safetensors.torch import load_file  # noqa: E402

from fedmllm.deploy.flower.__main__ import parse_args  # noqa: E402
from fedmllm.deploy.flower.client_app import make_client_app  # noqa: E402
from fedmllm.deploy.flower.local_grid import LocalGrid  # noqa: E402
from fedmllm.deploy.flower.resume import SERVER_CHECKPOINT  # noqa: E402
from fedmllm.deploy.flower.server_app import GLOBAL_ADAPTER, run_server  # noqa: E402

CLIENTS = ("vqa", "report", "detection")  # fedmed_synth, in partition order
NUM_CLIENTS = len(CLIENTS)


class ServerKilled(RuntimeError):
    """Stands for the ServerApp process dying."""


def config(cache_dir: Path, out: Path, experiment: str, **options) -> dict:
    extra = ("federation.rounds=3", "federation.eval_every=0")
    return flower_run_config(cache_dir, out, experiment, *extra, output_dir=out, **options)


def grid(run_config: dict, state_dir: Path, run_id: int, kill_in_round: int = 0) -> LocalGrid:
    """Three nodes; with ``kill_in_round``, the server 'dies' once that round's nodes trained."""
    nodes = [{"partition-id": i, "state-dir": str(state_dir)} for i in range(NUM_CLIENTS)]
    g = LocalGrid(make_client_app(run_config), nodes, run_config, run_id, fresh_process=True)
    if kill_in_round:
        pull = g.pull_messages

        def pull_then_die(ids):
            replies = list(pull(ids))  # the nodes have trained and saved their state
            if any(r.metadata.group_id == str(kill_in_round) for r in replies):
                raise ServerKilled(f"killed in round {kill_in_round}")
            return replies

        g.pull_messages = pull_then_die
    return g


def crashed_then_resumed(cache_dir, tmp_path, experiment: str, forget_before_round=False):
    """Run ``experiment`` until the server dies in round 2, then resume it as a new run."""
    first = config(cache_dir, tmp_path / "first", experiment)
    with pytest.raises(ServerKilled):
        run_server(grid(first, tmp_path / "nodes", run_id=7, kill_in_round=2), first)
    ckpt = torch.load(tmp_path / "first" / SERVER_CHECKPOINT, weights_only=False)
    assert ckpt["round"] == 1 and ckpt["state_run"] == "7"
    if forget_before_round:  # the nodes lose what they kept aside before round 2
        shutil.rmtree(tmp_path / "nodes" / "run_7" / "before_round")
    second = config(
        cache_dir, tmp_path / "second", experiment, **{"resume-from": str(tmp_path / "first")}
    )
    results = run_server(grid(second, tmp_path / "nodes", run_id=8), second)
    return results, load_file(tmp_path / "second" / GLOBAL_ADAPTER)


def uninterrupted(cache_dir, tmp_path, experiment: str):
    cfg = config(cache_dir, tmp_path / "whole", experiment)
    results = run_server(grid(cfg, tmp_path / "whole_nodes", run_id=7), cfg)
    return results, load_file(tmp_path / "whole" / GLOBAL_ADAPTER)


def test_a_server_killed_mid_round_resumes_to_the_uninterrupted_result(cache_dir, tmp_path):
    # SCAFFOLD keeps state on both sides: c on the server, c_k and AdamW moments on the nodes.
    whole, whole_global = uninterrupted(cache_dir, tmp_path, "fedmed_scaffold")
    resumed, resumed_global = crashed_then_resumed(cache_dir, tmp_path, "fedmed_scaffold")
    assert set(resumed_global) == set(whole_global)
    for k in whole_global:
        assert torch.equal(resumed_global[k], whole_global[k]), k
    rounds = [h["round"] for h in resumed["history"] if "aggregated" in h]
    assert rounds == [1, 2, 3]  # round 2 once: the cut-short attempt left no trace
    assert resumed["comm"] == whole["comm"]
    assert resumed["resumed_from"] == str(tmp_path / "first")
    assert resumed["clients"] == whole["clients"]
    # The nodes kept using the first run's state directories, not a fresh one of run 8.
    assert not (tmp_path / "nodes" / "run_8").exists()


def test_without_the_state_kept_before_the_round_the_retry_drifts(cache_dir, tmp_path):
    """The counterfactual: the nodes' c_k after the lost attempt differs, so must the result."""
    _, whole_global = uninterrupted(cache_dir, tmp_path, "fedmed_scaffold")
    _, drifted = crashed_then_resumed(
        cache_dir, tmp_path, "fedmed_scaffold", forget_before_round=True
    )
    assert any(not torch.equal(drifted[k], whole_global[k]) for k in whole_global)


def test_a_node_whose_base_is_ahead_of_the_checkpoint_is_refused(cache_dir, tmp_path):
    # FedEx-LoRA folds residuals into the nodes' frozen base: an older checkpoint than the
    # nodes' base cannot be resumed (the base cannot be rolled back).
    first = config(cache_dir, tmp_path / "first", "fedmed_fedex")
    run_server(grid(first, tmp_path / "nodes", run_id=3), first)
    path = tmp_path / "first" / SERVER_CHECKPOINT
    ckpt = torch.load(path, weights_only=False)
    # Every node applied every round's deltas (the last ones came with the final evaluation),
    # so the server keeps none, only its base as of round 3.
    assert ckpt["round"] == 3 and ckpt["synced"] == dict.fromkeys(CLIENTS, 3)
    assert ckpt["base"]["deltas"] == [] and ckpt["base"]["round"] == 3 and ckpt["base"]["base"]
    # Pretend the checkpoint is the one written after round 1.
    ckpt["round"], ckpt["synced"] = 1, dict.fromkeys(CLIENTS, 1)
    torch.save(ckpt, path)
    second = config(cache_dir, tmp_path / "second", "fedmed_fedex", **{"resume-from": str(path)})
    with pytest.raises(RuntimeError, match=r"base-weight deltas of round 3.*completed 1 rounds"):
        run_server(grid(second, tmp_path / "nodes", run_id=4), second)


def test_resuming_another_federation_fails_clearly(cache_dir, tmp_path):
    first = config(cache_dir, tmp_path / "first", "fedmed_fedavg")
    with pytest.raises(ServerKilled):
        run_server(grid(first, tmp_path / "nodes", run_id=5, kill_in_round=2), first)
    other = config(
        cache_dir, tmp_path / "other", "fedmed_scaffold", **{"resume-from": str(tmp_path / "first")}
    )
    with pytest.raises(ValueError, match=r"another federation: rule 'fedavg' vs 'scaffold'"):
        run_server(grid(other, tmp_path / "nodes", run_id=6), other)
    missing = config(cache_dir, tmp_path / "x", "fedmed_fedavg", **{"resume-from": "/nope"})
    with pytest.raises(FileNotFoundError, match="no Flower server checkpoint at /nope"):
        run_server(grid(missing, tmp_path / "nodes", run_id=6), missing)


def test_the_module_entry_point_passes_resume_from_through():
    run_config, _ = parse_args(["experiment=fedmed_fedavg", "flower.resume_from=/runs/a"])
    assert run_config["resume-from"] == "/runs/a"
    assert json.loads(json.dumps(run_config))["overrides"] == "experiment=fedmed_fedavg"
