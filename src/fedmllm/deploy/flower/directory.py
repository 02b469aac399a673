"""Which Flower node holds which client of the run, learnt from each node's hello."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedmllm.deploy.flower.client_app import BASE_ROUND, BASELINE, CLIENT_ID, CONFIG, NUM_EXAMPLES
from fedmllm.deploy.flower.config import FlowerOptions
from fedmllm.deploy.flower.transport import exchange

log = logging.getLogger(__name__)


@dataclass
class NodeInfo:
    """What a node said in its hello."""

    node_id: int
    task: str
    num_examples: int
    baseline: dict[str, float]
    base_round: int  # the last round of base-weight deltas it had applied


class NodeDirectory:
    """The run's clients and the nodes holding them.

    Args:
        client_ids: The run's clients.
        options: ``min_nodes`` and ``node_wait`` are used.
    """

    def __init__(self, client_ids: list[str], options: FlowerOptions) -> None:
        self.client_ids, self.options = list(client_ids), options
        self.nodes: dict[str, NodeInfo] = {}
        self._asked: set[int] = set()

    def discover(self, grid: Grid, wait: bool, hello: dict[str, str]) -> dict[str, NodeInfo]:
        """Ask every node not yet asked which client it holds; with ``wait``, until enough do.

        Args:
            grid: The grid.
            wait: Wait (up to ``node_wait`` s) until ``min_nodes`` clients (all, by default)
                have a node.
            hello: Config entries of the hello message.

        Returns:
            The clients heard from now (a restarted SuperNode's client again, under its new id).

        Raises:
            RuntimeError: If ``wait`` and too few clients answered in time.
        """
        target = self.options.min_nodes or len(self.client_ids)
        deadline = time.monotonic() + (self.options.node_wait if wait else 0.0)
        heard: dict[str, NodeInfo] = {}
        while True:
            new = [n for n in grid.get_node_ids() if n not in self._asked]
            if new:
                heard |= self._hello(grid, new, max(1.0, deadline - time.monotonic()), hello)
            if not wait or len(self.nodes) >= target or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if wait and len(self.nodes) < target:
            raise RuntimeError(
                f"only {len(self.nodes)} of {target} clients connected within "
                f"{self.options.node_wait:.0f} s: {sorted(self.nodes)}"
            )
        return heard

    def _hello(
        self, grid: Grid, node_ids: list[int], timeout: float, hello: dict[str, str]
    ) -> dict[str, NodeInfo]:
        content = {CONFIG: ConfigRecord(hello)}
        msgs = [Message(RecordDict(content), dst_node_id=n, message_type="query") for n in node_ids]
        heard = {}
        for reply in exchange(grid, msgs, timeout):
            node = reply.metadata.src_node_id
            self._asked.add(node)  # a node that did not answer in time is asked again later
            if reply.has_error():
                log.warning("node %s failed its hello: %s", node, reply.error.reason)
                continue
            cfg, baseline = reply.content[CONFIG], reply.content[BASELINE]
            cid = str(cfg[CLIENT_ID])
            if cid not in self.client_ids:
                log.warning("node %s holds client %r, not in this run: ignored", node, cid)
                continue
            if cid in self.nodes:  # a restarted SuperNode comes back with a new node id
                log.warning(
                    "client %s moved from node %s to node %s", cid, self.nodes[cid].node_id, node
                )
            info = NodeInfo(
                node,
                str(cfg["task"]),
                int(cfg[NUM_EXAMPLES]),
                dict(baseline.items()),
                int(cfg[BASE_ROUND]),
            )
            self.nodes[cid] = heard[cid] = info
            log.info("node %s holds client %s (%s)", node, cid, info.task)
        return heard
