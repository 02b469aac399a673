"""The round loop: one shared engine, clients swapped in by tensor copy."""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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
from fedmllm.federation.drift import drift_logs, drift_stats
from fedmllm.federation.evaluation import GLOBAL_MODEL, MetricPlan
from fedmllm.federation.server_round import RoundServer
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
    ) -> None:
        self.fabric, self.engine, self.method, self.aggregator = fabric, engine, method, aggregator
        self.train_clients = {c.client_id: c for c in train_clients}
        self.eval_clients = list(eval_clients if eval_clients is not None else train_clients)
        if not self.train_clients:
            raise ValueError("a federation needs at least one training client")
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.on_round_end = on_round_end
        # The two halves of a round, shared with the Flower apps (deploy/flower).
        self.trainer = LocalTrainer(fabric, engine, method, config, ClientStore(config.store_dir))
        initial = self.trainer.initial_state
        self.server = RoundServer(
            aggregator,
            {k: initial[k] for k in method.shared_keys(initial)},
            list(self.train_clients),
            config.seed,
            config.clients_per_round,
            method.client_rank,
        )
        self.base_keys: set[str] = set()  # frozen weights a server rule has changed
        self.round = 0
        self.comm = {"up_bytes": 0, "down_bytes": 0}
        self.history: list[dict[str, Any]] = []
        self.last_updates: list[ClientUpdate] = []
        self.baselines = {c.client_id: self._baseline(c) for c in self.eval_clients}

    # ----------------------------------------------------------------- shared halves
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
    def _swap_in(self, client_id: str) -> dict[str, Any] | None:
        """Load the client's model (what it receives + its private tensors) into the engine."""
        return self.trainer.load(client_id, self.server.received(client_id), self.server.extras())

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
        self.comm["down_bytes"] += result.down_bytes + state_nbytes(extras)
        self.comm["up_bytes"] += state_nbytes(update.state) + state_nbytes(update.extras)
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
        self.comm["down_bytes"] += len(self.train_clients) * state_nbytes(deltas)

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
        # A copy: a server optimiser may update the global tensors in place.
        before = (
            {k: v.detach().clone() for k, v in self.global_state.items()} if self.cfg.drift else {}
        )
        self.last_updates = updates  # the clients' local models before aggregation
        self._apply_base_weight_updates(self.server.aggregate(updates, self.round))
        logs: dict[str, float] = {
            f"client_{u.client_id}/train/{k}": v for u in updates for k, v in u.metrics.items()
        }
        logs.update({f"server/{k}": v for k, v in self.server.round_stats().items()})
        logs.update(self._record_round(updates, before))
        logs.update({f"comm/{k}": float(v) for k, v in self.comm.items()})
        logs["round/wall_s"] = time.perf_counter() - t0
        self.history[-1]["wall_s"] = logs["round/wall_s"]  # the round entry _record_round added
        return logs

    def _record_round(self, updates: list[ClientUpdate], before: AdapterState) -> dict[str, float]:
        """Append the round's train metrics and drift to ``history``; return the drift logs.

        A client's local state is its full adapter after the update: what it sent plus the
        private tensors just stored (see ``federation/drift.py`` for every quantity).
        """
        entry: dict[str, Any] = {
            "round": self.round + 1,
            "train": {u.client_id: dict(u.metrics) for u in updates},
        }
        logs: dict[str, float] = {}
        if self.cfg.drift and updates:

            def local_states() -> Iterator[tuple[str, AdapterState]]:
                for u in updates:
                    yield u.client_id, {**self.store.get(u.client_id)[0], **u.state}

            reference = {**self.initial_state, **before}
            entry["drift"] = drift_stats(
                local_states, self.global_state, reference, self.cfg.drift_pairwise_max
            )
            logs = drift_logs(entry["drift"])
        self.history.append(entry)
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
            self._swap_in(model_id)

    def _score_client(self, client: Any, write_path: Path | None) -> dict[str, float]:
        """Generate for ``client``'s test split with the loaded model and score it."""
        return self.trainer.score(client, write_path)

    def evaluate(self, write_dir: Path | None = None) -> dict[str, dict[str, float]]:
        """Score each evaluation client's personalised model on its own test split."""
        scores: dict[str, dict[str, float]] = {}
        for client in self.eval_clients:
            cid = client.client_id
            path = None if write_dir is None else write_dir / f"{cid}.jsonl"
            received = self.server.received(cid)
            scores[cid] = self.trainer.evaluate(client, received, self.server.extras(), path)
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
                scores[client.client_id] = self._score_client(client, path)
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
        return {
            "round": self.round,
            "global_state": self.global_state,
            "client_store": self.store.state_dict(),
            "aggregator": self.aggregator.state_dict(),
            "rng": rng_state(),
            "comm": dict(self.comm),
            "history": list(self.history),
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
        self.comm = payload["comm"]
        self.history = payload["history"]
        set_rng_state(payload["rng"])
        log.info("resumed from %s at round %d", path, self.round)

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
                    self.history.append({"round": self.round, "scores": scores})
                    logs.update(self._eval_logs(scores))
                self.fabric.log_dict(logs, step=self.round)
                if self.cfg.checkpoint:
                    save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.checkpoint_payload())
                if self.on_round_end is not None:
                    self.on_round_end(self.round, logs)
                progress.update(rounds_task, completed=self.round)
        final = self.evaluate(write_dir=self.run_dir / "predictions")
        self.history.append({"round": self.round, "scores": final})
        self.fabric.log_dict(self._eval_logs(final), step=self.round)
        return {
            "scores": final,
            "baselines": self.baselines,
            "comm": dict(self.comm),
            "wall_s": time.perf_counter() - t_start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "history": self.history,
            "aggregator": self.aggregator.describe(),
        }


def _interactive() -> bool:
    return sys.stderr.isatty()
