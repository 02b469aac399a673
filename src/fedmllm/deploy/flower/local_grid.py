"""A Flower ``Grid`` whose nodes are ClientApps called in this process, without Ray.

For tests and debugging (a breakpoint in a ClientApp handler works): messages are handled
in order when the server pulls, each node keeps its own ``Context`` (node config and state)
as a SuperNode would. A node can be marked dead (its messages are never answered, as when a
SuperNode's process is killed), and every message can be handled as in a fresh process (the
per-process node runtime is dropped first), which is what a deployment's ClientApp sees.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Iterable
from typing import Any
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from fedmllm.deploy.flower import node as node_module

CLIENT_APP_ERROR = 1
"""Error code of a reply whose handler raised (``ErrorCode.CLIENT_APP_RAISED_EXCEPTION``)."""


class LocalGrid(Grid):
    """In-process nodes ``1..n``, each with ``node_configs[i]``.

    Args:
        client_app: The ClientApp every node runs.
        node_configs: One node config per node.
        run_config: The run config every Context carries.
        run_id: The run's id.
        fresh_process: Drop the cached node runtime before every message.
    """

    def __init__(
        self,
        client_app: ClientApp,
        node_configs: list[dict[str, Any]],
        run_config: dict[str, Any] | None = None,
        run_id: int = 1,
        fresh_process: bool = False,
    ) -> None:
        self.client_app, self.fresh_process, self._run_id = client_app, fresh_process, run_id
        # What Flower's runtimes set for a ServerApp process: Message() reads it.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, 0, 1
        self.contexts = {
            i + 1: Context(run_id, i + 1, dict(cfg), RecordDict(), dict(run_config or {}))
            for i, cfg in enumerate(node_configs)
        }
        self.dead: set[int] = set()
        self.handled: list[Message] = []  # every message a node handled, in order
        self._inbox: dict[str, Message] = {}

    # ----------------------------------------------------------------- Grid API
    def set_run(self, run: Any) -> None:
        """Unused: the run is fixed at construction."""

    @property
    def run(self) -> Run:
        return Run.create_empty(self._run_id)

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def restart(self, node_id: int) -> int:
        """Restart a node as a SuperNode restarts: same node config, a new node id."""
        new_id = max(self.contexts) + 1
        old = self.contexts.pop(node_id)
        self.contexts[new_id] = Context(
            old.run_id, new_id, dict(old.node_config), RecordDict(), dict(old.run_config)
        )
        return new_id

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.contexts if n not in self.dead]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            if msg.metadata.dst_node_id not in self.contexts:
                raise ValueError(f"no node {msg.metadata.dst_node_id}")
            mid = uuid4().hex
            msg.metadata.__dict__["_message_id"] = mid
            self._inbox[mid] = msg
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = []
        for mid in list(message_ids):
            msg = self._inbox.get(mid)
            if msg is None or msg.metadata.dst_node_id in self.dead:
                continue  # a dead node never answers
            del self._inbox[mid]
            replies.append(self._handle(msg))
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

    # ----------------------------------------------------------------- nodes
    def _handle(self, msg: Message) -> Message:
        node = msg.metadata.dst_node_id
        if self.fresh_process:
            node_module.drop_runtimes()
        self.handled.append(msg)
        msg = copy.deepcopy(
            msg
        )  # each node gets its own copy, as off the wire (SecAgg+'s mod edits it)
        try:
            reply = self.client_app(msg, self.contexts[node])
        except Exception as e:  # as a SuperNode does: the server gets an error reply
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            reply = Message(Error(CLIENT_APP_ERROR, detail), reply_to=msg)
        return reply
