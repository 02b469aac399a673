"""Round bookkeeping: one implementation for the Simulator and the Flower strategy.

A :class:`Ledger` keeps what a federation reports about itself besides the model:

- ``comm``, the training traffic in bytes (``docs/design.md``, "Communication accounting"):
  down, the global state as each sampled client needed it plus the rule's broadcast extras,
  and dense base-weight deltas once per client that receives them; up, each update's shared
  tensors and extras. The callers say what crossed the wire (only they know: the simulator
  counts in process, the strategy per message); the ledger adds it up.
- ``history`` (checkpointed, written to ``results.json``), entries of two kinds that may share
  a round: round entries ``{round, train: {client: metrics}, drift, wall_s, server}`` (the
  strategy adds ``aggregated``, ``failed``, ``rejected``) and evaluation entries
  ``{round, scores}``. Readers select by key (``"scores" in entry``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from fedmllm.federation.drift import drift_logs, drift_stats
from fedmllm.types import AdapterState, ClientUpdate, state_nbytes
from fedmllm.utils.memory import peak_rss_mb


def update_nbytes(update: ClientUpdate) -> int:
    """Up-link bytes of one update: its shared tensors and its extras."""
    return state_nbytes(update.state) + state_nbytes(update.extras)


class Ledger:
    """Traffic counters and round history of one federation.

    Args:
        drift: Record drift diagnostics in each round entry (``federation.drift``).
        drift_pairwise_max: As ``federation.drift_pairwise_max``.
    """

    def __init__(self, drift: bool = True, drift_pairwise_max: int = 16) -> None:
        self.drift, self.drift_pairwise_max = drift, drift_pairwise_max
        self.comm: dict[str, int] = {"up_bytes": 0, "down_bytes": 0}
        self.history: list[dict[str, Any]] = []
        self._round_entry: dict[str, Any] | None = None

    # ----------------------------------------------------------------- traffic
    def count(self, down: int = 0, up: int = 0) -> None:
        """Add ``down`` and ``up`` bytes of training traffic."""
        self.comm["down_bytes"] += down
        self.comm["up_bytes"] += up

    def comm_logs(self) -> dict[str, float]:
        """The counters as ``comm/<name>`` scalars for a logger."""
        return {f"comm/{k}": float(v) for k, v in self.comm.items()}

    # ----------------------------------------------------------------- history
    def snapshot(self, global_state: AdapterState) -> AdapterState:
        """A copy of the global state before aggregation, which drift measures updates from
        (a server optimiser may update the global tensors in place); empty without drift."""
        return {k: v.detach().clone() for k, v in global_state.items()} if self.drift else {}

    def record_round(
        self,
        round_no: int,
        updates: Sequence[ClientUpdate],
        global_after: AdapterState,
        reference: AdapterState,
        local_state: Callable[[ClientUpdate], AdapterState] | None = None,
        server_stats: Mapping[str, float] | None = None,
        **fields: Any,
    ) -> dict[str, float]:
        """Append the entry of round ``round_no`` (1-based); return its drift logs.

        Args:
            round_no: The round just aggregated, counting from 1.
            updates: The updates that were aggregated.
            global_after: The global state after aggregation.
            reference: Where the updates started (see ``federation/drift.py``).
            local_state: A client's full local adapter after its update (what it sent plus
                its private tensors). None where only the sent tensors are known (a server):
                the drift record then covers them alone and says ``scope: shared``.
            server_stats: The rule's scalars about this aggregation (``RoundServer.round_stats``).
            **fields: Further entries (the Flower strategy's ``aggregated``, ``failed``...).
        """
        entry: dict[str, Any] = {
            "round": round_no,
            "train": {u.client_id: dict(u.metrics) for u in updates},
            **fields,
        }
        logs: dict[str, float] = {}
        if self.drift and updates:

            def local_states() -> Iterator[tuple[str, AdapterState]]:
                for u in updates:
                    yield u.client_id, (u.state if local_state is None else local_state(u))

            entry["drift"] = drift_stats(
                local_states, global_after, reference, self.drift_pairwise_max
            )
            if local_state is None:
                entry["drift"]["scope"] = "shared"  # private tensors never reach the server
            logs = drift_logs(entry["drift"])
        if server_stats:
            entry["server"] = dict(server_stats)
        self.history.append(entry)
        self._round_entry = entry
        return logs

    def end_round(self, wall_s: float) -> None:
        """Write the wall time of the round last recorded into its entry."""
        if self._round_entry is None:
            raise RuntimeError("end_round before any record_round")
        self._round_entry["wall_s"] = wall_s

    def record_scores(self, round_no: int, scores: dict[str, dict[str, float]]) -> None:
        """Append an evaluation entry: each scored client's scores after round ``round_no``."""
        self.history.append({"round": round_no, "scores": scores})

    # ----------------------------------------------------------------- results and checkpoints
    def outcome(
        self,
        scores: dict[str, dict[str, float]],
        baselines: dict[str, dict[str, float]],
        wall_s: float,
        aggregator: dict[str, Any],
    ) -> dict[str, Any]:
        """A finished run as ``run_files.build_results`` reads it (this process's peak RSS)."""
        return {
            "scores": scores,
            "baselines": baselines,
            "comm": dict(self.comm),
            "wall_s": wall_s,
            "peak_rss_mb": peak_rss_mb(),
            "history": self.history,
            "aggregator": aggregator,
        }

    def state_dict(self) -> dict[str, Any]:
        """``comm`` and ``history`` for a checkpoint."""
        return {"comm": dict(self.comm), "history": list(self.history)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``comm`` and ``history``."""
        self.comm = dict(state["comm"])
        self.history = list(state["history"])
        self._round_entry = None
