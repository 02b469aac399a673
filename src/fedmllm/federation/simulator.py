"""The round loop: one shared engine, clients swapped in by tensor copy."""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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
from fedmllm.federation.client_store import ClientStore
from fedmllm.federation.evaluation import (
    generate_all,
    score_predictions,
    write_predictions,
)
from fedmllm.federation.protocol import Engine, FederatedMethod
from fedmllm.federation.sampling import batch_indices, cosine_lr, sample_clients
from fedmllm.metrics import MAIN_METRIC, trivial_prediction
from fedmllm.types import AdapterState, ClientUpdate, state_nbytes

log = logging.getLogger(__name__)


@dataclass
class FederationConfig:
    """Knobs of the round loop (Hydra group ``federation/``)."""

    rounds: int = 10
    local_steps: int = 20
    batch_size: int = 8
    clients_per_round: int | float | None = None
    lr: float = 5e-4
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    eval_every: int = 5
    eval_batch_size: int = 50
    max_new_tokens: dict[str, int] = field(
        default_factory=lambda: {"vqa": 6, "report": 64, "detection": 24}
    )
    persist_optimizer: bool = True
    checkpoint: bool = True
    store_dir: str | None = None
    seed: int = 0


@dataclass
class Client:
    """A training or evaluation participant: duck-typed on fedmllm's ``ClientData``."""

    client_id: str
    task: str
    train: Sequence[Any]
    test: Sequence[Any]


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
        self.store = ClientStore(config.store_dir)
        self.optimizer = method.configure_optimizers()
        self._fresh_optimizer = self.optimizer.state_dict()
        self.initial_state = method.adapter_state()
        self._views: dict[int, AdapterState] = {}
        self.global_state = {
            k: self.initial_state[k] for k in method.shared_keys(self.initial_state)
        }
        self.base_keys: set[str] = set()  # frozen weights a server rule has changed
        self.round = 0
        self.comm = {"up_bytes": 0, "down_bytes": 0}
        self.history: list[dict[str, Any]] = []
        self.baselines = {c.client_id: self._baseline(c) for c in self.eval_clients}

    # ----------------------------------------------------------------- state swapping
    @property
    def global_state(self) -> AdapterState:
        """The server's shared state (at r_max when clients have different ranks)."""
        return self._global_state

    @global_state.setter
    def global_state(self, state: AdapterState) -> None:
        self._global_state = state
        self._views = {}  # per-rank views of the old state are stale

    def _hook(self, name: str) -> Callable[..., Any] | None:
        """One of the method's optional client hooks (``protocol.ClientHooks``), or None."""
        return getattr(self.method, name, None)

    def _global_view(self, client_id: str) -> AdapterState:
        """The global state as ``client_id`` receives it (``aggregator.for_client`` at its rank)."""
        rank_of = self._hook("client_rank")
        rank = rank_of(client_id) if rank_of is not None else None
        if rank is None:
            return self.global_state
        if rank not in self._views:
            self._views[rank] = self.aggregator.for_client(self.global_state, rank)
        return self._views[rank]

    def _swap_in(self, client_id: str) -> dict[str, Any] | None:
        """Load global shared + the client's private tensors into the engine (copy_, no realloc).

        The method first hears who the client is and what the server broadcasts
        (``begin_client``), then the tensors are copied in.
        """
        private, opt_state = self.store.get(client_id)
        begin = self._hook("begin_client")
        if begin is not None:
            begin(client_id, self.aggregator.broadcast_extras())
        view = self._global_view(client_id)
        self.method.load_adapter_state({**self.initial_state, **view, **private})
        return opt_state

    def _batches(self, client: Any, client_idx: int, first_batch: int) -> Iterator[dict[str, Any]]:
        b = first_batch
        while True:
            idx = batch_indices(
                len(client.train), self.cfg.batch_size, b, self.cfg.seed, client_idx
            )
            yield self.engine.collator([client.train[i] for i in idx])
            b += 1

    # ----------------------------------------------------------------- one round
    def _local_update(self, client_id: str) -> ClientUpdate:
        client = self.train_clients[client_id]
        opt_state = self._swap_in(client_id)
        self.optimizer.load_state_dict(
            opt_state
            if (opt_state is not None and self.cfg.persist_optimizer)
            else self._fresh_optimizer
        )
        client_idx = list(self.train_clients).index(client_id)
        offset = self.round * self.cfg.local_steps
        total = self.cfg.rounds * self.cfg.local_steps

        def lr_at(step: int) -> float:
            return cosine_lr(
                self.cfg.lr, offset + step, total, self.cfg.warmup_steps, self.cfg.min_lr_ratio
            )

        batches = self._batches(client, client_idx, offset)
        metrics = self.method.local_update(
            self.fabric, batches, self.cfg.local_steps, self.optimizer, lr_at
        )
        state = self.method.adapter_state()
        shared = {k: state[k] for k in self.method.shared_keys(state)}
        private = {k: state[k] for k in self.method.private_keys(state)}
        self.store.put(client_id, private, self.optimizer.state_dict())
        extras_of = self._hook("client_extras")
        extras = extras_of() if extras_of is not None else {}
        return ClientUpdate(client_id, shared, len(client.train), metrics, extras)

    def _apply_base_weight_updates(self) -> None:
        """Add the last aggregation's dense base-weight deltas to the shared engine.

        Every client shares the new base, so every training client must receive the deltas:
        their bytes count down once per training client (FedEx's d×d residual per layer).
        """
        deltas = self.aggregator.base_weight_updates()
        if not deltas:
            return
        add = self._hook("add_to_base_weights")
        if add is None:
            raise TypeError(
                f"{type(self.aggregator).__name__} changes base weights but "
                f"{type(self.method).__name__} has no add_to_base_weights"
            )
        add(deltas)
        self.base_keys.update(deltas)
        self.comm["down_bytes"] += len(self.train_clients) * state_nbytes(deltas)

    def run_round(self, progress: Progress | None = None, task_id: Any = None) -> dict[str, Any]:
        """Train the sampled clients of ``self.round`` and aggregate; returns the round's logs."""
        progress = progress if progress is not None else Progress(disable=True)
        task_id = task_id if task_id is not None else progress.add_task("clients")
        t0 = time.perf_counter()
        chosen = sample_clients(
            list(self.train_clients), self.round, self.cfg.seed, self.cfg.clients_per_round
        )
        progress.reset(task_id, total=len(chosen))
        updates = []
        extras_bytes = state_nbytes(self.aggregator.broadcast_extras())
        for cid in chosen:
            progress.update(task_id, description=f"client {cid}")
            self.comm["down_bytes"] += state_nbytes(self._global_view(cid)) + extras_bytes
            update = self._local_update(cid)
            self.comm["up_bytes"] += state_nbytes(update.state) + state_nbytes(update.extras)
            updates.append(update)
            progress.advance(task_id)
        self.global_state = self.aggregator.aggregate(self.global_state, updates, self.round)
        self._apply_base_weight_updates()
        logs: dict[str, float] = {
            f"client_{u.client_id}/train/{k}": v for u in updates for k, v in u.metrics.items()
        }
        logs.update({f"comm/{k}": float(v) for k, v in self.comm.items()})
        stats = getattr(self.aggregator, "round_stats", None)  # e.g. FedA²-LoRA's conditioning
        logs.update({f"server/{k}": float(v) for k, v in (stats() if stats else {}).items()})
        logs["round/wall_s"] = time.perf_counter() - t0
        return logs

    # ----------------------------------------------------------------- evaluation
    def _baseline(self, client: Any) -> dict[str, float]:
        source = self.train_clients.get(client.client_id, client)
        pred = trivial_prediction(client.task, [s.answer for s in source.train])
        return score_predictions(client.task, [pred] * len(client.test), client.test)

    def evaluate(self, write_dir: Path | None = None) -> dict[str, dict[str, float]]:
        """Score each evaluation client's personalised model on its own test split."""
        scores: dict[str, dict[str, float]] = {}
        self.method.eval()
        for client in self.eval_clients:
            self._swap_in(client.client_id)
            max_new = self.cfg.max_new_tokens.get(client.task, 32)
            preds = generate_all(
                self.method,
                self.engine.gen_collator,
                client.test,
                self.cfg.eval_batch_size,
                max_new,
            )
            scores[client.client_id] = score_predictions(client.task, preds, client.test)
            if write_dir is not None:
                write_predictions(write_dir / f"{client.client_id}.jsonl", client.test, preds)
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
        if not self.base_keys:
            return {}
        return self._hook("base_weights")(sorted(self.base_keys))

    def resume_from(self, path: str | Path) -> None:
        """Continue from a checkpoint written by this class (a file or a run directory)."""
        payload = load_checkpoint(path)
        # Against the initial state: a rule's shared keys may change over rounds (FedLEASE).
        unknown = set(payload["global_state"]) - set(self.initial_state)
        if unknown:
            raise KeyError(f"checkpoint shares keys this method does not: {sorted(unknown)[:5]}")
        base = payload.get("base_weights", {})
        if base:
            load = self._hook("load_base_weights")
            if load is None:
                raise TypeError(
                    f"checkpoint {path} changed base weights; the method cannot load them"
                )
            load(base)
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
