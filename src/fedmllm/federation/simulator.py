"""The round loop: one shared engine, clients swapped in by tensor copy."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedmllm.aggregators.base import Aggregator
from fedmllm.federation.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fedmllm.federation.client_round import LocalTrainer
from fedmllm.federation.client_store import ClientStore
from fedmllm.federation.config import FederationConfig
from fedmllm.federation.evaluation import GLOBAL_MODEL, MetricPlan
from fedmllm.federation.ledger import Ledger, update_nbytes
from fedmllm.federation.server_round import RoundServer, build_round_server
from fedmllm.metrics import MAIN_METRIC
from fedmllm.protocol import Engine, FederatedMethod
from fedmllm.types import AdapterState, ClientUpdate, state_nbytes

log = logging.getLogger(__name__)


class Simulator:
    """Simulates a federation in one process on one device.

    Args:
        fabric: A launched ``lightning.Fabric``.
        engine: The shared engine (its collators are used to build batches).
        method: The LightningModule that owns adapters and local training.
        aggregator: The server rule.
        train_clients: Clients that train (one pooled client for Centralized).
        eval_clients: Clients whose test splits are scored (defaults to ``train_clients``).
        config: Round-loop settings.
        run_dir: Where checkpoints, predictions and TensorBoard logs go.
        on_round_end: Called with ``(round, logs)`` after every round.
        run_config: The run's resolved config, recorded in every checkpoint (a resume is
            compared with it: ``fedmllm.resume``).
    """

    def __init__(
        self,
        fabric: Any,
        engine: Engine,
        method: FederatedMethod,
        aggregator: Aggregator,
        train_clients: Sequence[Any],
        config: FederationConfig,
        run_dir: str | Path,
        eval_clients: Sequence[Any] | None = None,
        on_round_end: Callable[[int, dict[str, Any]], None] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        self.fabric, self.engine, self.method, self.aggregator = fabric, engine, method, aggregator
        self.train_clients = {c.client_id: c for c in train_clients}
        self.eval_clients = list(eval_clients if eval_clients is not None else train_clients)
        if not self.train_clients:
            raise ValueError("a federation needs at least one training client")
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.on_round_end = on_round_end
        self.run_config = run_config
        # The two halves of a round, shared with the Flower apps (deploy/flower).
        self.trainer = LocalTrainer(fabric, engine, method, config, ClientStore(config.store_dir))
        self.server: RoundServer = build_round_server(
            method, aggregator, self.trainer.initial_state, list(self.train_clients), config
        )
        self.ledger = Ledger(config.drift, config.drift_pairwise_max)  # traffic and history
        self.base_keys: set[str] = set()  # frozen weights a server rule has changed
        self.round = 0
        self.last_updates: list[ClientUpdate] = []
        self.baselines = {c.client_id: self._baseline(c) for c in self.eval_clients}

    # ----------------------------------------------------------------- shared parts
    @property
    def comm(self) -> dict[str, int]:
        """Training traffic so far (``up_bytes``, ``down_bytes``)."""
        return self.ledger.comm

    @property
    def history(self) -> list[dict[str, Any]]:
        """Round and evaluation entries so far (see ``federation/ledger.py``)."""
        return self.ledger.history

    @property
    def store(self) -> ClientStore:
        """Each client's private tensors and optimiser state."""
        return self.trainer.store

    @property
    def optimizer(self) -> Any:
        """The one optimiser whose state is swapped per client."""
        return self.trainer.optimizer

    @property
    def initial_state(self) -> AdapterState:
        """Every adapter tensor as initialised (what a client starts from)."""
        return self.trainer.initial_state

    @property
    def metric_plan(self) -> MetricPlan:
        """Which metrics score which client (``federation.metrics`` / ``metric_options``)."""
        return self.trainer.metric_plan

    @property
    def global_state(self) -> AdapterState:
        """The server's shared state (at r_max when clients have different ranks)."""
        return self.server.global_state

    @global_state.setter
    def global_state(self, state: AdapterState) -> None:
        self.server.global_state = state

    # ----------------------------------------------------------------- state swapping
    def swap_in(self, client_id: str, shared: AdapterState | None = None) -> None:
        """Put a client's personalised adapter into the engine, e.g. for analysis after a run.

        Args:
            client_id: Whose private tensors to load (none yet: the initial ones).
            shared: Shared tensors to use instead of the global state, e.g. the client's own
                pre-aggregation update from :attr:`last_updates`.
        """
        received = self.server.received(client_id) if shared is None else shared
        self.trainer.load(client_id, received, self.server.extras())

    # ----------------------------------------------------------------- one round
    def _local_update(self, client_id: str) -> ClientUpdate:
        """Train one client (see ``LocalTrainer.train``) and count its traffic."""
        client = self.train_clients[client_id]
        extras = self.server.extras()
        result = self.trainer.train(
            client,
            list(self.train_clients).index(client_id),
            self.round,
            self.server.received(client_id),
            extras,
        )
        update = result.update
        self.ledger.count(result.down_bytes + state_nbytes(extras), update_nbytes(update))
        return update

    def _apply_base_weight_updates(self, deltas: AdapterState) -> None:
        """Add the last aggregation's dense base-weight deltas to the shared engine.

        Every client shares the new base, so every training client must receive the deltas:
        their bytes count down once per training client (FedEx's d×d residual per layer).
        """
        if not deltas:
            return
        self.method.add_to_base_weights(deltas)
        self.base_keys.update(deltas)
        self.ledger.count(down=len(self.train_clients) * state_nbytes(deltas))

    def run_round(self, progress: Progress | None = None, task_id: Any = None) -> dict[str, Any]:
        """Train the sampled clients of ``self.round`` and aggregate; returns the round's logs."""
        progress = progress if progress is not None else Progress(disable=True)
        task_id = task_id if task_id is not None else progress.add_task("clients")
        t0 = time.perf_counter()
        chosen = self.server.sample(self.round)
        progress.reset(task_id, total=len(chosen))
        updates = []
        for cid in chosen:
            progress.update(task_id, description=f"client {cid}")
            updates.append(self._local_update(cid))
            progress.advance(task_id)
        before = self.ledger.snapshot(self.global_state)
        self.last_updates = updates  # the clients' local models before aggregation
        self._apply_base_weight_updates(self.server.aggregate(updates, self.round))
        logs: dict[str, float] = {
            f"client_{u.client_id}/train/{k}": v for u in updates for k, v in u.metrics.items()
        }
        stats = self.server.round_stats()
        logs.update({f"server/{k}": v for k, v in stats.items()})
        # A client's local state for drift: its full adapter after the update, i.e. what it
        # sent plus the private tensors just stored (see federation/drift.py).
        logs.update(
            self.ledger.record_round(
                self.round + 1,
                updates,
                self.global_state,
                {**self.initial_state, **before},
                lambda u: {**self.store.get(u.client_id)[0], **u.state},
                stats,
            )
        )
        logs.update(self.ledger.comm_logs())
        logs["round/wall_s"] = time.perf_counter() - t0
        self.ledger.end_round(logs["round/wall_s"])
        return logs

    # ----------------------------------------------------------------- evaluation
    def _baseline(self, client: Any) -> dict[str, float]:
        source = self.train_clients.get(client.client_id, client)
        return self.trainer.baseline(client, source.train)

    def _load_model(self, model_id: str) -> None:
        """Load a client's personalised model, or the global one for ``GLOBAL_MODEL``."""
        if model_id == GLOBAL_MODEL:
            # The global model: initial adapters with the global shared tensors, no private ones.
            self.method.load_adapter_state({**self.initial_state, **self.global_state})
        else:
            self.swap_in(model_id)

    def evaluate(
        self, write_dir: Path | None = None, split: str = "test"
    ) -> dict[str, dict[str, float]]:
        """Score each evaluation client's personalised model on its own ``split`` (``test``;
        ``val`` for searches: clients without validation samples are left out)."""
        scores: dict[str, dict[str, float]] = {}
        for client in self.eval_clients:
            cid = client.client_id
            if split != "test" and not getattr(client, split, None):
                continue
            path = None if write_dir is None else write_dir / f"{cid}.jsonl"
            received = self.server.received(cid)
            scores[cid] = self.trainer.evaluate(client, received, self.server.extras(), path, split)
        return scores

    def evaluate_model(
        self, model_id: str, write_dir: Path | None = None
    ) -> dict[str, dict[str, float]]:
        """Score one model on every evaluation client's test split.

        Args:
            model_id: A client id (its personalised model) or ``GLOBAL_MODEL``.
            write_dir: Where ``<client>.jsonl`` predictions go (none when None).

        Returns:
            Test client id -> scores. Row ``model_id`` of the cross-client matrix; for a client
            id its own entry equals :meth:`evaluate`'s (same model, batches and metrics).
        """
        known = {c.client_id for c in self.eval_clients} | set(self.train_clients)
        if model_id != GLOBAL_MODEL and model_id not in known:
            raise KeyError(f"no client {model_id!r}; clients are {sorted(known)}")
        scores: dict[str, dict[str, float]] = {}
        self.method.eval()
        try:
            self._load_model(model_id)
            for client in self.eval_clients:
                path = None if write_dir is None else write_dir / f"{client.client_id}.jsonl"
                scores[client.client_id] = self.trainer.score(client, path)
                log.info("model %s on client %s: done", model_id, client.client_id)
        finally:
            self.method.train()
        return scores

    def _eval_logs(self, scores: dict[str, dict[str, float]]) -> dict[str, float]:
        logs = {f"client_{cid}/test/{k}": v for cid, s in scores.items() for k, v in s.items()}
        mains = [scores[c.client_id][MAIN_METRIC[c.task]] for c in self.eval_clients]
        if mains:
            logs["round/avg/test/main"] = sum(mains) / len(mains)
        return logs

    # ----------------------------------------------------------------- checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        config = {} if self.run_config is None else {"config": self.run_config}
        return {
            **config,
            "round": self.round,
            "global_state": self.global_state,
            "client_store": self.store.state_dict(),
            "aggregator": self.aggregator.state_dict(),
            "rng": rng_state(),
            **self.ledger.state_dict(),
            "baselines": self.baselines,
            "base_weights": self._base_weights(),
        }

    def _base_weights(self) -> AdapterState:
        """The engine's current values of every frozen weight a server rule has changed."""
        if not self.base_keys:
            return {}
        return self.method.base_weights(sorted(self.base_keys))

    def resume_from(self, path: str | Path) -> None:
        """Continue from a checkpoint written by this class (a file or a run directory)."""
        self.load_state(path)
        log.info("resumed from %s at round %d", path, self.round)

    def load_state(self, path: str | Path) -> None:
        """Set every state of the run (rounds done, tensors, traffic, RNG) from a checkpoint."""
        payload = load_checkpoint(path)
        # Against the initial state: a rule's shared keys may change over rounds (FedLEASE).
        unknown = set(payload["global_state"]) - set(self.initial_state)
        if unknown:
            raise KeyError(f"checkpoint shares keys this method does not: {sorted(unknown)[:5]}")
        base = payload.get("base_weights", {})
        if base:
            self.method.load_base_weights(base)
        self.base_keys = set(base)
        self.round = payload["round"]
        self.global_state = payload["global_state"]
        self.store.load_state_dict(payload["client_store"])
        self.aggregator.load_state_dict(payload["aggregator"])
        self.ledger.load_state_dict(payload)
        set_rng_state(payload["rng"])

    # ----------------------------------------------------------------- the loop
    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Run the remaining rounds, evaluate, and return the final scores.

        Args:
            stop_after: Stop (as if interrupted) once this many rounds are done; for tests.
        """
        t_start = time.perf_counter()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
            disable=not _interactive(),
        ) as progress:
            rounds_task = progress.add_task("rounds", total=self.cfg.rounds, completed=self.round)
            clients_task = progress.add_task("clients", total=len(self.train_clients))
            while self.round < self.cfg.rounds:
                if stop_after is not None and self.round >= stop_after:
                    return {"interrupted": True, "round": self.round}
                logs = self.run_round(progress, clients_task)
                self.round += 1
                last = self.round == self.cfg.rounds
                if self.cfg.eval_every > 0 and self.round % self.cfg.eval_every == 0 and not last:
                    scores = self.evaluate()
                    self.ledger.record_scores(self.round, scores)
                    logs.update(self._eval_logs(scores))
                self.fabric.log_dict(logs, step=self.round)
                if self.cfg.checkpoint:
                    save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.checkpoint_payload())
                if self.on_round_end is not None:
                    self.on_round_end(self.round, logs)
                progress.update(rounds_task, completed=self.round)
        final = self.evaluate(write_dir=self.run_dir / "predictions")
        self.ledger.record_scores(self.round, final)
        self.fabric.log_dict(self._eval_logs(final), step=self.round)
        wall_s = time.perf_counter() - t_start
        return self.ledger.outcome(final, self.baselines, wall_s, self.aggregator.describe())


def _interactive() -> bool:
    return sys.stderr.isatty()
