"""The Flower ClientApp: one hospital's client, trained with fedmllm's own local update.

Three message types:

- ``query`` (hello): who is this node — client id, task, number of training examples, the
  trivial baseline's scores, and the last round of base-weight deltas it applied.
- ``train``: the global state as this client receives it, the rule's broadcast extras and any
  base-weight deltas it has not applied; runs ``LocalTrainer.train`` (the simulator's code)
  and replies with exactly the method's shared tensors, the method's extras, ``num-examples``
  and the local metrics. Private tensors and optimiser moments stay in the node's state dir.
- ``evaluate``: the same payload; scores the client's personalised model on its test split
  (predictions are written on the node, never sent).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedmllm.deploy.flower.config import CONFIG_DIR_KEY, OVERRIDES_KEY, split_overrides
from fedmllm.deploy.flower.node import NodeRuntime, NodeSettings, runtime_for
from fedmllm.deploy.flower.records import get_base_deltas, get_state, put_state
from fedmllm.deploy.flower.secagg import is_secagg, secagg_mod, secagg_reply, weight_of

log = logging.getLogger(__name__)

# Content keys shared with the ServerApp.
GLOBAL, EXTRAS, UPDATE, CONFIG, METRICS, BASELINE = (
    "global",
    "extras",
    "update",
    "config",
    "metrics",
    "baseline",
)
NUM_EXAMPLES, DOWN_BYTES, CLIENT_ID, BASE_ROUND, STATE_RUN = (
    "num-examples",
    "down-bytes",
    "client-id",
    "base-round",
    "state-run",  # the run whose state directories the nodes use (a resumed run: the first)
)
BASE_WEIGHTS, BASE_WEIGHTS_ROUND, BASE_FROM = ("base-weights", "base-weights-round", "base-from")
"""A node too far behind gets the server's base weights, as of a round, instead of deltas;
otherwise the deltas after ``base-from``, the base round the server believes it has."""


def node_context(
    context: Context, defaults: dict[str, Any], msg: Message
) -> tuple[NodeRuntime, int, Any]:
    """The process's runtime for this run, and this node's ``(client index, client)``.

    ``defaults`` fills run-config keys the context lacks (``run_simulation`` passes none). The
    state directory is the one of the run the message names (``state-run``: a resumed run
    keeps its first run's), else this run's.
    """
    run_config = {**defaults, **dict(context.run_config)}
    settings = NodeSettings.from_node_config(dict(context.node_config))
    if settings.config_dir is None and run_config.get(CONFIG_DIR_KEY):
        settings = replace(settings, config_dir=str(run_config[CONFIG_DIR_KEY]))
    overrides = split_overrides(str(run_config.get(OVERRIDES_KEY, "")))
    config = msg.content.get(CONFIG, {})
    runtime = runtime_for(config.get(STATE_RUN, context.run_id), overrides, settings)
    idx, client = runtime.client(settings)
    return runtime, idx, client


def _check_addressee(msg: Message, client_id: str) -> None:
    """The server addresses a client by id: a node never trains someone else's turn."""
    expected = msg.content[CONFIG].get(CLIENT_ID) if CONFIG in msg.content else None
    if expected is not None and str(expected) != client_id:
        raise ValueError(f"message for client {expected!r} reached the node of {client_id!r}")


def _sync_base(runtime: NodeRuntime, client_id: str, msg: Message) -> int:
    """Bring the client's frozen base to the server's (deltas, or whole weights); its round."""
    config = msg.content[CONFIG]
    base = get_state(msg.content, BASE_WEIGHTS)
    base_round = int(config.get(BASE_WEIGHTS_ROUND, 0)) if base else 0
    assumed = 0 if base else int(config.get(BASE_FROM, 0))
    return runtime.sync_base(client_id, get_base_deltas(msg.content), base, base_round, assumed)


def _numbers(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric entries of ``metrics`` as floats (a MetricRecord holds numbers only)."""
    return {
        f"{prefix}{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


class ClientHandlers:
    """The ClientApp's message handlers.

    Args:
        defaults: Run-config entries used where Flower's run config has none (the Python
            simulation API has no run config; ``flwr run`` passes the app's).
    """

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self.defaults = dict(defaults or {})

    def hello(self, msg: Message, context: Context) -> Message:
        """Reply with the node's client id, task, data size, baseline scores and base round."""
        runtime, _, client = node_context(context, self.defaults, msg)
        baseline = runtime.trainer.baseline(client, client.train)
        content = RecordDict(
            {
                CONFIG: ConfigRecord(
                    {
                        CLIENT_ID: client.client_id,
                        "task": client.task,
                        NUM_EXAMPLES: len(client.train),
                        BASE_ROUND: runtime.base_round(client.client_id),
                    }
                ),
                BASELINE: MetricRecord(_numbers(baseline)),
            }
        )
        return Message(content, reply_to=msg)

    def train(self, msg: Message, context: Context) -> Message:
        """Run the client's local update of the message's round; reply with what it shares."""
        runtime, idx, client = node_context(context, self.defaults, msg)
        _check_addressee(msg, client.client_id)
        round_idx = int(msg.content[CONFIG]["round"])
        base_round = _sync_base(runtime, client.client_id, msg)
        runtime.start_round(client.client_id, round_idx)
        result = runtime.trainer.train(
            client, idx, round_idx, get_state(msg.content, GLOBAL), get_state(msg.content, EXTRAS)
        )
        update = result.update
        content = RecordDict()
        if is_secagg(msg):  # only the masked sum of n_k·x_k leaves (secaggplus_mod masks it)
            weight = weight_of(runtime.c.aggregator, update.num_examples)
            secagg_reply(content, update.state, weight, _numbers(update.metrics))
        else:
            put_state(content, UPDATE, update.state)
            put_state(content, EXTRAS, update.extras)
        metrics = {NUM_EXAMPLES: update.num_examples, DOWN_BYTES: result.down_bytes}
        content[METRICS] = MetricRecord({**metrics, **_numbers(update.metrics, "train/")})
        content[CONFIG] = ConfigRecord({CLIENT_ID: client.client_id, BASE_ROUND: base_round})
        log.info("client %s trained round %d", client.client_id, round_idx + 1)
        return Message(content, reply_to=msg)

    def evaluate(self, msg: Message, context: Context) -> Message:
        """Score the client's personalised model on its own test split."""
        runtime, _, client = node_context(context, self.defaults, msg)
        _check_addressee(msg, client.client_id)
        base_round = _sync_base(runtime, client.client_id, msg)
        final = bool(msg.content[CONFIG].get("final", False))
        path = runtime.state_dir / "predictions" / f"{client.client_id}.jsonl" if final else None
        scores = runtime.trainer.evaluate(
            client, get_state(msg.content, GLOBAL), get_state(msg.content, EXTRAS), path
        )
        content = RecordDict(
            {
                METRICS: MetricRecord(_numbers(scores)),
                CONFIG: ConfigRecord({CLIENT_ID: client.client_id, BASE_ROUND: base_round}),
            }
        )
        return Message(content, reply_to=msg)


def make_client_app(defaults: dict[str, Any] | None = None) -> ClientApp:
    """A ClientApp whose handlers read ``defaults`` where the run config is silent."""
    handlers = ClientHandlers(defaults)
    app = ClientApp(mods=[secagg_mod])  # SecAgg+ messages only (run config secagg=1)
    app.query()(handlers.hello)
    app.train()(handlers.train)
    app.evaluate()(handlers.evaluate)
    return app
