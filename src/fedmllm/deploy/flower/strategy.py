"""A Flower ``Strategy`` that runs fedmllm's server half over a Grid.

The maths stays in the aggregator: the strategy asks :class:`RoundServer` (the simulator's own
server half) which clients train, what each receives and what the new global state is. What
the strategy adds is the network: finding which node holds which client (a ``query`` hello),
packing messages, refusing replies that must not be aggregated (NaN/Inf, unknown keys, wrong
shapes) and going on without clients that died, as long as enough valid replies arrived
(``FlowerOptions.min_replies``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedmllm.deploy.flower.base_sync import BaseSync
from fedmllm.deploy.flower.client_app import (
    BASE_FROM,
    BASE_ROUND,
    BASE_WEIGHTS,
    BASE_WEIGHTS_ROUND,
    CLIENT_ID,
    CONFIG,
    EXTRAS,
    GLOBAL,
    STATE_RUN,
)
from fedmllm.deploy.flower.config import FlowerOptions
from fedmllm.deploy.flower.directory import NodeDirectory, NodeInfo
from fedmllm.deploy.flower.records import Shapes, put_base_deltas, put_state, to_record
from fedmllm.deploy.flower.replies import parse_scores, parse_train_reply
from fedmllm.deploy.flower.secagg import secure_round
from fedmllm.deploy.flower.transport import exchange, match_replies
from fedmllm.federation.ledger import Ledger
from fedmllm.federation.server_round import RoundServer
from fedmllm.metrics import MAIN_METRIC
from fedmllm.types import AdapterState, ClientUpdate, state_nbytes

log = logging.getLogger(__name__)

Shareable = Callable[[str, AdapterState], tuple[Shapes, Shapes]]
"""(client id, broadcast extras) → shapes of the update and of the extras that client may send
this round."""


class FedMLLMStrategy(Strategy):
    """Train ``rounds`` rounds of a fedmllm federation on the nodes of a Flower Grid.

    Args:
        server: The server half (aggregator, global state, sampling, per-client payloads).
        shareable: Which tensors and extras (with shapes) a client may send, given the round's
            broadcast extras.
        rounds: Number of rounds.
        eval_every: Evaluate every n rounds (and always after the last one).
        options: Deployment options (minimum replies, deadlines).
        eval_ids: Clients whose personalised models are scored.
        drift: Record drift diagnostics (over the shared tensors: private ones never arrive).
        drift_pairwise_max: As ``federation.drift_pairwise_max``.
        base: The server's side of the nodes' frozen base (rules that change it).
    """

    def __init__(
        self,
        server: RoundServer,
        shareable: Shareable,
        rounds: int,
        eval_every: int,
        options: FlowerOptions,
        eval_ids: list[str],
        drift: bool = True,
        drift_pairwise_max: int = 16,
        *,
        base: BaseSync,
    ) -> None:
        self.server, self.shareable, self.options = server, shareable, options
        self.rounds, self.eval_every, self.eval_ids = rounds, eval_every, list(eval_ids)
        self.directory = NodeDirectory(server.client_ids, options)
        self.synced: dict[str, int] = {}  # client → last base-weight round it applied
        self.base = base
        # Training traffic and history, kept as the simulator keeps them (drift over the shared
        # tensors: private ones never arrive); evaluation traffic (which the simulator, scoring
        # in-process, does not have) apart.
        self.ledger = Ledger(drift, drift_pairwise_max)
        self.eval_down_bytes = 0
        self.final_scores: dict[str, dict[str, float]] = {}
        self._sent: dict[str, Message] = {}
        self._unreachable: dict[str, str] = {}
        self._sent_eval: dict[str, Message] = {}
        self.completed = 0  # rounds done (a resumed run starts after its checkpoint's)
        self.state_run: str | None = None  # sent to the nodes: whose state dirs they use
        self.on_round_end: Callable[[int], None] | None = None  # e.g. write a checkpoint
        self.secure: Any = None  # a secagg.SecureAggregation: train rounds through SecAgg+

    # ----------------------------------------------------------------- nodes
    @property
    def nodes(self) -> dict[str, NodeInfo]:
        """Client id → the node holding it."""
        return self.directory.nodes

    def discover(self, grid: Grid, wait: bool) -> None:
        """Learn which nodes hold which clients (see :meth:`NodeDirectory.discover`).

        Raises:
            RuntimeError: If a node's frozen base is ahead of this server's rounds.
        """
        for cid, info in self.directory.discover(grid, wait, self._run_keys()).items():
            self.synced[cid] = info.base_round
            if info.base_round > self.completed:
                raise RuntimeError(
                    f"the node of client {cid} has applied the base-weight deltas of round "
                    f"{info.base_round}, but this server has completed {self.completed} rounds "
                    "(resumed from an older checkpoint?); a frozen base cannot be rolled back: "
                    "resume from the run's latest checkpoint, or give that node an empty state "
                    "dir (it then receives every delta again but loses its private state)"
                )

    def _run_keys(self) -> dict[str, str]:
        """Config entries every message carries: the state run, once known."""
        return {STATE_RUN: self.state_run} if self.state_run is not None else {}

    # ----------------------------------------------------------------- messages
    def _payload(self, cid: str, extras: AdapterState, config: dict[str, Any]) -> RecordDict:
        """The global state as ``cid`` receives it, the extras and the base deltas it lacks.

        Base deltas count as training traffic whenever they are sent (the simulator counts
        each round's deltas once per client); the rest is counted by the caller.
        """
        content = RecordDict()
        put_state(content, GLOBAL, self.server.received(cid))
        put_state(content, EXTRAS, extras)
        synced = self.synced.get(cid, 0)
        pending, base = self.base.for_node(synced)
        put_base_deltas(content, pending)
        if base:  # it lacks deltas no longer kept: the whole base, as of the server's round
            put_state(content, BASE_WEIGHTS, base)
            config = {**config, BASE_WEIGHTS_ROUND: self.base.round}
        content[CONFIG] = ConfigRecord(
            {CLIENT_ID: cid, BASE_FROM: synced, **self._run_keys(), **config}
        )
        self.ledger.count(down=sum(state_nbytes(d) for _, d in pending) + state_nbytes(base))
        return content

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """One ``train`` message per sampled client whose node is connected."""
        self.discover(grid, wait=not self.nodes)
        sampled = self.server.sample(server_round - 1)
        extras = self.server.extras()
        self._sent, self._unreachable = {}, {}
        for cid in sampled:
            if cid not in self.nodes:
                self._unreachable[cid] = "no connected node holds this client"
                continue
            content = self._payload(cid, extras, {"round": server_round - 1})
            self.ledger.count(down=state_nbytes(extras))
            self._sent[cid] = Message(
                content,
                dst_node_id=self.nodes[cid].node_id,
                message_type="train",
                group_id=str(server_round),
            )
        return list(self._sent.values())

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check the replies, aggregate the valid ones with the fedmllm aggregator.

        Raises:
            RuntimeError: If fewer valid replies than ``min_replies`` arrived.
        """
        sampled = self.server.sample(server_round - 1)
        answers, failures = match_replies(self._sent, list(replies))
        failures.update(self._unreachable)
        updates, rejected = self._accept(server_round, sampled, answers)
        for cid, why in failures.items():
            log.warning("round %d: client %s failed: %s", server_round, cid, why)
            if cid in self._sent:  # it was sent the whole state, whatever it needed of it
                self.ledger.count(down=state_nbytes(self.server.received(cid)))
        needed = self.options.needed(len(sampled))
        if len(updates) < needed:
            raise RuntimeError(
                f"round {server_round}: {len(updates)} valid replies of {len(sampled)} sampled "
                f"clients, {needed} needed (min-replies); failed: {failures}; rejected: {rejected}"
            )
        before = self.ledger.snapshot(self.server.global_state)
        deltas = self.server.aggregate(updates, server_round - 1)
        self.base.add(server_round, deltas)
        server_stats = self.server.round_stats()
        self.ledger.record_round(
            server_round,
            updates,
            self.server.global_state,
            before,
            server_stats=server_stats,
            aggregated=[u.client_id for u in updates],
            failed=dict(failures),
            rejected=rejected,
        )
        stats = {f"server/{k}": v for k, v in server_stats.items()}
        losses = [u.metrics["loss"] for u in updates if "loss" in u.metrics]
        if losses:
            stats["train/loss"] = sum(losses) / len(losses)
        return to_record(self.server.global_state)[0], MetricRecord(stats)

    def _accept(
        self, server_round: int, sampled: list[str], answers: dict[str, Message]
    ) -> tuple[list[ClientUpdate], dict[str, list[str]]]:
        """Parse each answer in the sampled order; refuse and log the unsound ones."""
        updates: list[ClientUpdate] = []
        rejected: dict[str, list[str]] = {}
        extras = self.server.extras()
        for cid in sampled:
            if cid not in answers:
                continue
            parsed = parse_train_reply(cid, answers[cid], *self.shareable(cid, extras))
            self.ledger.count(parsed.down_bytes, parsed.up_bytes)
            if parsed.base_round is not None:
                self.synced[cid] = parsed.base_round
            if parsed.update is None:
                rejected[cid] = parsed.problems
                log.warning(
                    "round %d: rejected the update of client %s, not aggregated: %s",
                    server_round,
                    cid,
                    "; ".join(parsed.problems),
                )
                continue
            updates.append(parsed.update)
        return updates, rejected

    # ----------------------------------------------------------------- evaluation
    def is_eval_round(self, server_round: int) -> bool:
        """Whether clients are scored after ``server_round`` (as in the simulator)."""
        every = self.eval_every > 0 and server_round % self.eval_every == 0
        return server_round == self.rounds or every

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """One ``evaluate`` message per evaluation client after an evaluation round."""
        self._sent_eval = {}
        if not self.is_eval_round(server_round):
            return []
        extras = self.server.extras()
        final = server_round == self.rounds
        online = set(grid.get_node_ids())  # a node the SuperLink dropped cannot answer
        for cid in self.eval_ids:
            if cid not in self.nodes or self.nodes[cid].node_id not in online:
                log.warning("round %d: no node holds client %s: not evaluated", server_round, cid)
                continue
            content = self._payload(cid, extras, {"round": server_round, "final": final})
            self.eval_down_bytes += state_nbytes(self.server.received(cid)) + state_nbytes(extras)
            self._sent_eval[cid] = Message(
                content,
                dst_node_id=self.nodes[cid].node_id,
                message_type="evaluate",
                group_id=f"eval-{server_round}",
            )
        return list(self._sent_eval.values())

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Record each client's scores; return the average main metric."""
        if not self._sent_eval:
            return None
        answers, failures = match_replies(self._sent_eval, list(replies))
        scores: dict[str, dict[str, float]] = {}
        for cid, reply in answers.items():
            try:
                scores[cid] = parse_scores(cid, reply)
            except ValueError as e:
                failures[cid] = str(e)
            cfg = reply.content.get(CONFIG, {})
            if BASE_ROUND in cfg:
                self.synced[cid] = int(cfg[BASE_ROUND])
        for cid, why in failures.items():
            log.warning("round %d: evaluation of client %s failed: %s", server_round, cid, why)
        self.ledger.record_scores(server_round, scores)
        if server_round == self.rounds:
            self.final_scores = scores
        mains = [s[MAIN_METRIC[self.nodes[c].task]] for c, s in scores.items()]
        return MetricRecord({"avg/test/main": sum(mains) / len(mains)}) if mains else None

    def summary(self) -> None:
        """Log what runs: the rule, the rounds, the deployment options."""
        log.info(
            "fedmllm strategy: %s, %d rounds, %d clients, options %s",
            self.server.describe(),
            self.rounds,
            len(self.server.client_ids),
            self.options,
        )

    # ----------------------------------------------------------------- the loop
    def fit(self, grid: Grid) -> None:
        """Run every round (train, then evaluate when due) with the deadlines of ``options``."""
        self.summary()
        self.discover(grid, wait=True)
        if self.completed:
            log.info("resuming after round %d of %d", self.completed, self.rounds)
        for server_round in range(self.completed + 1, self.rounds + 1):
            t0 = time.perf_counter()
            self.discover(grid, wait=False)  # a restarted SuperNode rejoins under a new id
            sent = self.configure_train(server_round, ArrayRecord(), ConfigRecord(), grid)
            if self.secure is not None:  # the server learns only the weighted sum
                metrics = MetricRecord(secure_round(self, grid, server_round))
            else:
                replies = exchange(grid, list(sent), self.options.round_timeout)
                _, metrics = self.aggregate_train(server_round, replies)
            self.ledger.end_round(time.perf_counter() - t0)
            server_stats = {k: v for k, v in (metrics or {}).items() if k.startswith("server/")}
            if server_stats:  # the rule's own scalars (FedA²-LoRA's conditioning, ...)
                log.info("round %d: %s", server_round, server_stats)
            to_score = self.configure_evaluate(server_round, ArrayRecord(), ConfigRecord(), grid)
            main = self.aggregate_evaluate(
                server_round, exchange(grid, list(to_score), self.options.eval_timeout)
            )
            log.info(
                "round %d/%d: %d of %d clients aggregated, %.1f s%s%s",
                server_round,
                self.rounds,
                len(self.ledger.history[-1 if main is None else -2]["aggregated"]),
                len(self.server.sample(server_round - 1)),
                time.perf_counter() - t0,
                f", loss {metrics['train/loss']:.4f}"
                if metrics and "train/loss" in metrics
                else "",
                f", avg test {100 * main['avg/test/main']:.2f}" if main else "",
            )
            self.completed = server_round
            online = set(grid.get_node_ids())
            self.base.drop_applied(
                self.synced.get(cid, 0) for cid, n in self.nodes.items() if n.node_id in online
            )
            if self.on_round_end is not None:
                self.on_round_end(server_round)

    def baselines(self) -> dict[str, dict[str, float]]:
        """Each connected client's trivial-baseline scores (from its hello)."""
        return {cid: dict(info.baseline) for cid, info in self.nodes.items()}
