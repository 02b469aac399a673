"""Resuming a Flower run after the ServerApp (or the SuperLink under it) died.

The server writes ``flower_server.ckpt`` into its run directory after every round: the global
state, the aggregator's state, the traffic and history so far, which base-weight round each
client has applied, and the server's base weights with the deltas some node still lacks
(``BaseSync``). A new run given ``resume-from=<run dir or checkpoint>`` continues with the
next round.

The nodes' private state is on their own disks, in a directory named after the run that
created it (``run_<id>``); a resumed run tells its nodes to keep using that one (``state-run``
in every message). A node also keeps its client's private state as it was before the round it
trains (``NodeRuntime.start_round``), so a round that was cut short and is trained again
starts from the same state as the first attempt: with the per-(seed, round, client) seeding of
local updates, a resumed run ends with the same global adapter as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedmllm.federation.checkpoint import read_checkpoint_file
from fedmllm.utils.io import torch_save_atomic

SERVER_CHECKPOINT = "flower_server.ckpt"
"""The server's round checkpoint, in the run directory."""
RESUME_KEY = "resume-from"
"""Run-config key: a run directory (or its ``flower_server.ckpt``) to continue."""
VERSION = 1


def server_payload(strategy: Any) -> dict[str, Any]:
    """What a resumed server needs of ``strategy`` (a ``FedMLLMStrategy``) after a round."""
    server = strategy.server
    return {
        "version": VERSION,
        "round": strategy.completed,
        "client_ids": list(server.client_ids),
        "aggregator_name": server.aggregator.name,
        "global_state": server.global_state,
        "aggregator": server.aggregator.state_dict(),
        **strategy.ledger.state_dict(),  # comm, history
        "eval_down_bytes": strategy.eval_down_bytes,
        "synced": dict(strategy.synced),
        "base": strategy.base.state_dict(),
        "state_run": strategy.state_run,
    }


def save_server_checkpoint(path: Path, strategy: Any) -> None:
    """Write the checkpoint atomically (a crash mid-write keeps the previous one)."""
    torch_save_atomic(server_payload(strategy), path)


def load_server_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_server_checkpoint` (a file or its run dir).

    Raises:
        FileNotFoundError: If there is none.
        RuntimeError: If it cannot be read.
        ValueError: If it is of another version.
    """
    payload = read_checkpoint_file(path, SERVER_CHECKPOINT, "Flower server checkpoint")
    if not isinstance(payload, dict) or payload.get("version") != VERSION:
        raise ValueError(f"{path} is not a version-{VERSION} Flower server checkpoint")
    return payload


def restore_server(strategy: Any, payload: dict[str, Any], initial_keys: set[str]) -> None:
    """Put ``strategy`` where the checkpointed run was after its last completed round, its
    nodes' state run (whose state directories they keep using) included.

    Args:
        strategy: A freshly built ``FedMLLMStrategy`` of the same experiment.
        payload: From :func:`load_server_checkpoint`.
        initial_keys: The keys the method may share (the checkpoint must not hold others).

    Raises:
        ValueError: If the checkpoint is of another federation (clients, rule, more rounds).
        KeyError: If it shares tensors this method does not.
    """
    server = strategy.server
    problems = []
    if payload["client_ids"] != list(server.client_ids):
        problems.append(f"clients {payload['client_ids']} vs {list(server.client_ids)}")
    if payload["aggregator_name"] != server.aggregator.name:
        problems.append(f"rule {payload['aggregator_name']!r} vs {server.aggregator.name!r}")
    if payload["round"] > strategy.rounds:
        problems.append(f"{payload['round']} rounds done, this run has {strategy.rounds}")
    if problems:
        raise ValueError("the checkpoint is of another federation: " + "; ".join(problems))
    unknown = set(payload["global_state"]) - initial_keys
    if unknown:
        raise KeyError(f"checkpoint shares keys this method does not: {sorted(unknown)[:5]}")
    server.global_state = payload["global_state"]
    server.aggregator.load_state_dict(payload["aggregator"])
    strategy.completed = int(payload["round"])
    strategy.ledger.load_state_dict(payload)
    strategy.eval_down_bytes = int(payload["eval_down_bytes"])
    strategy.synced = dict(payload["synced"])
    strategy.base.load_state_dict(payload["base"])
    strategy.state_run = str(payload["state_run"])
