"""What a Flower node keeps: its client, the shared engine of its process, and its own state.

A ClientApp is rebuilt for every message (in a deployment, in a fresh process), so nothing a
client must remember can live in Python objects. Everything private goes to the node's state
directory: the :class:`ClientStore` entry (private adapter tensors, AdamW moments) and, for
rules that change the frozen base (FedEx-LoRA, FRLoRA), the node's current base weights.
What *can* live in the process is the expensive, shareable part — the composed config, the
engine and the method — cached per process (:func:`runtime_for`), as the simulator keeps one
engine for all clients.

Node config keys (``flower-supernode --node-config '...'``; the simulation engine sets
``partition-id`` and ``num-partitions`` itself):

- ``partition-id``: index of the node's client among the benchmark's clients, or
- ``client-id``: the client's id (wins over ``partition-id``);
- ``data-dir``: the node's ``paths.data_dir`` (benchmark and model caches, local data);
- ``state-dir``: where private state goes (default ``<paths.log_dir>/flower_nodes``);
- ``overrides``: extra Hydra overrides of this node only (e.g. a local dataset root);
- ``config-dir``: a whole config tree to use instead of the packaged one (``CONFIG_DIR_KEY``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from fedmllm.build import Components, build_components, make_fabric
from fedmllm.deploy.flower.config import CONFIG_DIR_KEY, compose_config, split_overrides
from fedmllm.federation import ClientStore
from fedmllm.federation.client_round import LocalTrainer
from fedmllm.types import AdapterState
from fedmllm.utils.io import torch_save_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeSettings:
    """A node's own settings, from Flower's node config."""

    partition_id: int | None = None
    client_id: str | None = None
    data_dir: str | None = None
    state_dir: str | None = None
    overrides: tuple[str, ...] = ()
    config_dir: str | None = None

    @classmethod
    def from_node_config(cls, node_config: dict[str, Any]) -> NodeSettings:
        """Read the keys above; a node must name its client one way or the other."""
        pid = node_config.get("partition-id")
        cid = node_config.get("client-id")
        if pid is None and cid is None:
            raise ValueError(
                "the node config names no client: start the SuperNode with "
                "--node-config 'partition-id=<i>' (or client-id=<id>)"
            )

        def text(key: str) -> str | None:
            value = node_config.get(key)
            return str(value) if value not in (None, "") else None

        return cls(
            partition_id=int(pid) if pid is not None else None,
            client_id=text("client-id"),
            data_dir=text("data-dir"),
            state_dir=text("state-dir"),
            overrides=tuple(split_overrides(str(node_config.get("overrides", "")))),
            config_dir=text(CONFIG_DIR_KEY),
        )


class NodeRuntime:
    """The composed config, components and trainer one process uses for its nodes.

    Args:
        cfg: The composed config (run overrides + the node's own).
        state_dir: This run's private-state directory on the node.
    """

    def __init__(self, cfg: DictConfig, state_dir: Path) -> None:
        self.cfg = cfg
        self.state_dir = state_dir
        self.c: Components = build_components(cfg)
        if self.c.method.pooled:
            raise ValueError(
                f"method {self.c.method.name!r} pools every client's data in one place; it has "
                "no federated deployment (run it with train.py)"
            )
        fabric, _ = make_fabric(cfg)
        method = fabric.to_device(self.c.method)
        store = ClientStore(state_dir / "clients", shared=True)
        self.trainer = LocalTrainer(fabric, self.c.engine, method, self.c.federation, store)
        self._original_base: AdapterState = {}  # the pretrained values of changed base weights

    def client(self, settings: NodeSettings) -> tuple[int, Any]:
        """The node's ``(client index, client)`` among the run's training clients."""
        clients = self.c.train_clients
        if settings.client_id is not None:
            ids = [c.client_id for c in clients]
            if settings.client_id not in ids:
                raise ValueError(f"node config client-id={settings.client_id!r}: not among {ids}")
            idx = ids.index(settings.client_id)
        else:
            idx = int(settings.partition_id or 0)
            if not 0 <= idx < len(clients):
                raise ValueError(
                    f"node config partition-id={idx}: the benchmark has {len(clients)} clients "
                    f"(0..{len(clients) - 1})"
                )
        return idx, clients[idx]

    # ----------------------------------------------------------------- retried rounds
    def start_round(self, client_id: str, round_idx: int) -> bool:
        """Make training round ``round_idx`` start from the private state of its first attempt.

        The first time a round reaches the node, the client's stored entry (or its absence) is
        kept aside; when the same round comes again (the server was restarted from a checkpoint
        taken before it), that entry is put back, so the retry trains from the same state.

        Returns:
            Whether this is a retry.
        """
        folder = self.state_dir / "before_round"
        path = folder / f"{client_id}.round{round_idx}.pt"
        store = self.trainer.store
        if path.is_file():
            entry = torch.load(path, weights_only=False)
            if entry is None:
                store.discard(client_id)
            else:
                store.put(client_id, *entry)
            log.info("client %s: round %d again, from its state before", client_id, round_idx + 1)
            return True
        for older in folder.glob(f"{client_id}.round*.pt"):  # one copy per client is enough
            older.unlink()
        torch_save_atomic(store.get(client_id) if store.has(client_id) else None, path)
        return False

    # ----------------------------------------------------------------- base weights
    def _base_path(self, client_id: str) -> Path:
        return self.state_dir / "base_weights" / f"{client_id}.pt"

    def base_round(self, client_id: str) -> int:
        """The last round whose base-weight deltas this client has applied (0: none)."""
        path = self._base_path(client_id)
        return int(torch.load(path)["round"]) if path.is_file() else 0

    def _keep_original(self, keys: Iterable[str]) -> None:
        """Remember the pretrained values of ``keys`` before the engine's base first changes
        them (the engine may be shared with the other clients of this process)."""
        fresh = [k for k in keys if k not in self._original_base]
        if fresh:
            self._original_base.update(self.trainer.method.base_weights(fresh))

    def sync_base(
        self,
        client_id: str,
        pending: list[tuple[int, AdapterState]],
        base: AdapterState | None = None,
        base_round: int = 0,
        assumed_round: int = 0,
    ) -> int:
        """Give the engine this client's frozen base weights, then bring them to the server's.

        The engine may be shared with other nodes of this process, so the client's own saved
        weights (or the pretrained ones) are restored first. ``base`` (the server's weights as
        of ``base_round``, sent to a node that is too far behind) replaces them; then the
        ``pending`` deltas are added in round order: all those after ``assumed_round``, the
        base round the server believes the node has. Deltas of rounds already applied are
        skipped, so a resent delta is harmless; the new weights are saved atomically.

        Returns:
            The client's base round afterwards.

        Raises:
            ValueError: If the node's base is older than ``assumed_round`` (it lost its base
                file while the server believed it up to date): the deltas would corrupt it.
        """
        path = self._base_path(client_id)
        saved = torch.load(path) if path.is_file() else {"round": 0, "weights": {}}
        method = self.trainer.method
        if base and base_round > int(saved["round"]):
            saved = {"round": base_round, "weights": dict(base)}
        if self._original_base or saved["weights"]:
            self._keep_original(saved["weights"])
            method.load_base_weights({**self._original_base, **saved["weights"]})
        done = int(saved["round"])
        todo = [(r, d) for r, d in sorted(pending, key=lambda x: x[0]) if r > done and d]
        if done < assumed_round:
            raise ValueError(
                f"client {client_id}: base weights are at round {done} but the server sent the "
                f"deltas after round {assumed_round} (the node's base file was lost?); restart "
                "the SuperNode so that the server sends it the whole base again"
            )
        for _, deltas in todo:
            self._keep_original(deltas)
            method.add_to_base_weights(deltas)
        if not todo and not base:
            return done
        keys = sorted(set(saved["weights"]) | {k for _, d in todo for k in d})
        entry = {"round": todo[-1][0] if todo else done, "weights": method.base_weights(keys)}
        torch_save_atomic(entry, path)
        return entry["round"]


_RUNTIMES: dict[tuple[Any, ...], NodeRuntime] = {}


def runtime_for(run_id: int | str, overrides: list[str], settings: NodeSettings) -> NodeRuntime:
    """The process's runtime for this run and node settings (built on first use).

    Nodes of one process (the simulation engine's actors) share it, like the simulator's
    clients share one engine: their private state is swapped in from their own files.
    """
    run_id = str(run_id)
    key = (run_id, tuple(overrides), settings.overrides, settings.data_dir, settings.state_dir)
    if key not in _RUNTIMES:
        node_overrides = list(overrides) + list(settings.overrides)
        if settings.data_dir is not None:
            node_overrides.append(f"paths.data_dir={settings.data_dir}")
        cfg = compose_config(node_overrides, settings.config_dir)
        root = Path(settings.state_dir or f"{cfg.paths.log_dir}/flower_nodes")
        _RUNTIMES.clear()  # one run per process at a time: free the previous engine
        _RUNTIMES[key] = NodeRuntime(cfg, root / f"run_{run_id}")
        log.info("node runtime for run %s built (state in %s)", run_id, root / f"run_{run_id}")
    return _RUNTIMES[key]


def drop_runtimes() -> None:
    """Forget the process's runtimes, as a fresh ClientApp process would start."""
    _RUNTIMES.clear()
