"""Secure aggregation on the Flower deployment: Flower's SecAgg+ (run-config ``secagg=1``).

Flower's ``SecAggPlusWorkflow`` (server) and ``secaggplus_mod`` (client) run the protocol: each
client quantises ``n_k · x_k`` (clipped to ``±secagg-clip``), masks it with pairwise and private
masks and sends only the masked integers; the server unmasks their *sum* and learns the
sample-weighted mean ``Σ n_k x_k / Σ n_k`` and nothing about any single ``x_k``. The workflow
was written for Flower's legacy strategies, so this module gives it the two legacy pieces it
calls (``configure_fit``: who takes part; ``aggregate_fit``: hands over the mean) and swaps
in fedmllm's own train payloads after its setup stage.

The server rule then aggregates that one mean as if a single client had sent it, which is
exact for rules that need only the weighted sum (``compat.SUM_ONLY``: FedAvg, the FedOpt
family) and impossible for every other rule (robust rules, which need each update):
:func:`check_secagg` refuses those before a round starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import Code, FitRes, Parameters, Status, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as legacy
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import (
    SecAggPlusWorkflow,
    WorkflowState,
)
from flwr.serverapp import Grid

from fedmllm import compat
from fedmllm.deploy.flower.records import Shapes
from fedmllm.types import AdapterState, ClientUpdate


def check_secagg(rule: Any, method: Any) -> None:
    """Refuse a server rule (or method) that cannot work from the clients' weighted sum.

    Raises:
        ValueError: One sentence naming the rule, why, and the rules that fit.
    """
    from fedmllm.build import rule_catalogue  # the packaged rules (imports Hydra configs)

    if compat.SUM_ONLY not in type(rule).provides:
        fits = [n for n, (_, prov) in rule_catalogue().items() if compat.SUM_ONLY in prov]
        raise ValueError(
            f"secagg=1 lets the server see only the sum of the clients' updates, but "
            f"aggregator={rule.name} needs each client's update (robust and paired rules do): "
            f"use aggregator={' or aggregator='.join(fits)}, or run without secagg"
        )
    unfit = sorted(set(method.needs()) & {compat.MIXED_RANKS, compat.PARTIAL_UPDATES})
    if unfit:
        raise ValueError(
            f"secagg=1 sums equally shaped updates of every client, but method={method.name} "
            f"sends {' and '.join(unfit)}: give every client the same rank and keys, or run "
            "without secagg"
        )


def weight_of(rule: Any, num_examples: int) -> int:
    """The weight a client masks its update with: n_k, or 1 for ``weighting=uniform``."""
    return 1 if getattr(rule, "weighting", "samples") == "uniform" else int(num_examples)


# ----------------------------------------------------------------- client side
def secagg_reply(
    content: RecordDict, state: AdapterState, weight: int, metrics: Mapping[str, float]
) -> None:
    """Add the legacy ``FitRes`` records ``secaggplus_mod`` masks (then deletes) to a reply.

    The tensors go in sorted key order as float32; the mod clears every array record of the
    reply after masking, so no tensor of the client leaves the node in the clear.
    """
    arrays = [state[k].detach().to("cpu", torch.float32).numpy() for k in sorted(state)]
    scalars = {k: float(v) for k, v in metrics.items()}
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), weight, scalars)
    for name, record in legacy.fitres_to_recorddict(fitres, keep_input=True).items():
        content[name] = record


def secagg_mod(msg: Message, ctxt: Context, call_next: Any) -> Message:
    """``secaggplus_mod`` for the messages of the protocol, plain handling for the others."""
    from flwr.client.mod import secaggplus_mod

    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


def is_secagg(msg: Message) -> bool:
    """Whether a train message is the masked-vector stage of SecAgg+."""
    return RECORD_KEY_CONFIGS in msg.content.config_records


# ----------------------------------------------------------------- server side
class _Proxy(ClientProxy):
    """The legacy handle the workflow keys its clients by: only a node id."""

    def __init__(self, cid: str, node_id: int) -> None:
        super().__init__(cid)
        self.node_id = node_id

    def get_properties(self, *a: Any, **k: Any) -> Any:  # pragma: no cover - never called
        raise NotImplementedError

    get_parameters = fit = evaluate = reconnect = get_properties


@dataclass
class SecureResult:
    """One SecAgg+ round: the weighted mean, total weight and what each client reported."""

    mean: AdapterState
    total_weight: int
    metrics: dict[str, dict[str, float]]
    failures: list[str]


class _Bridge(LegacyStrategy):
    """The two legacy calls the workflow makes, over fedmllm's own messages."""

    def __init__(self, sent: Mapping[str, Message]) -> None:
        self.sent = dict(sent)
        self.result: tuple[list[np.ndarray], list[tuple[str, FitRes]], list[Any]] | None = None

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: Any):
        from flwr.common import FitIns

        empty = Parameters(tensors=[], tensor_type="numpy.ndarray")
        return [
            (_Proxy(cid, m.metadata.dst_node_id), FitIns(empty, {})) for cid, m in self.sent.items()
        ]

    def aggregate_fit(self, server_round: int, results: Any, failures: Any):
        from flwr.common import parameters_to_ndarrays

        mean = parameters_to_ndarrays(results[0][1].parameters) if results else []
        self.result = (mean, [(p.cid, r) for p, r in results], list(failures))
        return None, {}

    def initialize_parameters(self, client_manager: Any) -> None:  # pragma: no cover
        return None

    def configure_evaluate(self, *a: Any) -> list:  # pragma: no cover
        return []

    def aggregate_evaluate(self, *a: Any) -> tuple[None, dict]:  # pragma: no cover
        return None, {}

    def evaluate(self, *a: Any) -> None:  # pragma: no cover
        return None


class _Workflow(SecAggPlusWorkflow):
    """SecAgg+ whose masked-vector stage carries fedmllm's train payloads."""

    def __init__(self, payloads: Mapping[int, RecordDict], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.payloads = payloads

    def setup_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        ok = super().setup_stage(grid, context, state)
        state.nid_to_fitins = {nid: self.payloads[nid] for nid in state.nid_to_fitins}
        return ok


@dataclass
class SecureAggregation:
    """Run-config knobs of SecAgg+ (Flower's defaults), and one round of it.

    Attributes:
        clip: Each entry of ``(n_k / max_weight) · x_k`` is clipped to ±clip before
            quantisation (Flower's ``clipping_range``).
        max_weight: The largest weight n_k a client may have (Flower's ``max_weight``).
        quantization: Quantisation levels over [−clip, clip] (``quantization_range``).
        shares: Shares of each client's secret, as a fraction of the sampled clients.
        threshold: Shares needed to rebuild a secret, as a fraction of ``shares``.
        timeout: Seconds each stage waits for replies.
    """

    clip: float = 8.0
    max_weight: float = 1000.0
    quantization: int = 2**22
    shares: float = 1.0
    threshold: float = 0.7
    timeout: float | None = None

    def run(
        self, grid: Grid, sent: Mapping[str, Message], shapes: Shapes, server_round: int
    ) -> SecureResult:
        """One SecAgg+ round over the train messages ``sent`` (client id → message).

        ``shapes``: the keys and shapes every client sends (the same for all).
        """
        bridge = _Bridge(sent)
        state = RecordDict()
        state[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: server_round})
        state[MAIN_PARAMS_RECORD] = ArrayRecord()
        ctx = LegacyContext(Context(0, 0, {}, state, {}), strategy=bridge)
        workflow = _Workflow(
            {m.metadata.dst_node_id: m.content for m in sent.values()},
            num_shares=float(self.shares),
            reconstruction_threshold=float(self.threshold),
            max_weight=float(self.max_weight),
            clipping_range=float(self.clip),
            quantization_range=int(self.quantization),
            timeout=self.timeout,
        )
        workflow(grid, ctx)
        if bridge.result is None:
            raise RuntimeError(
                f"round {server_round}: SecAgg+ halted before unmasking (too few clients "
                "answered each stage; see the log): no aggregate"
            )
        arrays, results, failures = bridge.result
        keys = sorted(shapes)
        mean = {
            k: torch.from_numpy(np.asarray(a, dtype=np.float32)).reshape(shapes[k])
            for k, a in zip(keys, arrays, strict=True)
        }
        metrics = {cid: dict(r.metrics) for cid, r in results}
        total = sum(int(r.num_examples) for _, r in results)
        return SecureResult(mean, total, metrics, [str(f) for f in failures])


def secure_round(strategy: Any, grid: Grid, server_round: int) -> dict[str, float]:
    """Aggregate round ``server_round`` of ``strategy`` (a ``FedMLLMStrategy`` whose train
    messages are out in ``strategy._sent``) through SecAgg+; returns the round's metrics.

    The rule aggregates the unmasked weighted mean as one update of weight Σ n_k; the ledger
    records each client's reported metrics but no drift (no single update is ever seen).

    Raises:
        ValueError: The sampled clients would send differently shaped updates.
        RuntimeError: Fewer clients than ``min-replies`` finished the protocol.
    """
    sent, sampled = strategy._sent, strategy.server.sample(server_round - 1)
    extras = strategy.server.extras()
    shapes = {cid: strategy.shareable(cid, extras)[0] for cid in sent}
    ref = next(iter(shapes.values()), {})
    if any(s != ref for s in shapes.values()):
        raise ValueError(
            f"round {server_round}: secagg=1 needs every client to send the same keys and "
            "shapes (equal LoRA ranks), but the sampled clients differ"
        )
    result = strategy.secure.run(grid, sent, ref, server_round)
    needed = strategy.options.needed(len(sampled))
    if len(result.metrics) < needed:
        raise RuntimeError(
            f"round {server_round}: {len(result.metrics)} clients finished SecAgg+ of "
            f"{len(sampled)} sampled, {needed} needed (min-replies)"
        )
    for cid in result.metrics:  # down: the whole payload; up: the masked vector's entries
        strategy.ledger.count(
            down=sum(v.numel() * v.element_size() for v in strategy.server.received(cid).values()),
            up=sum(v.numel() * 4 for v in result.mean.values()),
        )
    update = ClientUpdate("secagg-sum", result.mean, result.total_weight)
    before = strategy.ledger.snapshot(strategy.server.global_state)
    strategy.base.add(server_round, strategy.server.aggregate([update], server_round - 1))
    stats = strategy.server.round_stats()
    strategy.ledger.record_round(
        server_round,
        [],
        strategy.server.global_state,
        before,
        server_stats=stats,
        train=result.metrics,
        aggregated=sorted(result.metrics),
        failed={cid: "did not finish SecAgg+" for cid in sent if cid not in result.metrics},
        rejected={},
        secagg=True,
    )
    out = {f"server/{k}": v for k, v in stats.items()}
    losses = [m["loss"] for m in result.metrics.values() if "loss" in m]
    if losses:
        out["train/loss"] = sum(losses) / len(losses)
    return out
