"""Sending a batch of messages and collecting the replies, within a deadline.

``Grid.send_and_receive`` polls every 3 s; a round of the tiny model lasts a few seconds, so
:func:`exchange` polls faster. It returns every reply that arrived in time — replies with
content, and error replies (a ClientApp exception, or the SuperLink's "node unavailable"
once a dead SuperNode has missed its heartbeats). A message whose reply is late is simply
absent; the caller decides what a missing reply means.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from flwr.app import Message
from flwr.serverapp import Grid


def exchange(
    grid: Grid, messages: Sequence[Message], timeout: float, poll_s: float = 0.25
) -> list[Message]:
    """Push ``messages`` and pull their replies until all are in or ``timeout`` seconds pass.

    Args:
        grid: Flower's grid of the run.
        messages: Instruction messages; each gets its ``message_id`` when pushed.
        timeout: Seconds to wait for the last reply.
        poll_s: Seconds between two pulls.

    Returns:
        The replies that arrived in time (each names its message in
        ``metadata.reply_to_message_id``).
    """
    if not messages:
        return []
    deadline = time.monotonic() + timeout
    pending = {mid for mid in grid.push_messages(list(messages)) if mid}
    replies: list[Message] = []
    while pending and time.monotonic() < deadline:
        for reply in grid.pull_messages(list(pending)):
            if reply.metadata.reply_to_message_id in pending:
                pending.discard(reply.metadata.reply_to_message_id)
                replies.append(reply)
        if pending:
            time.sleep(poll_s)
    return replies


def match_replies(
    sent: dict[str, Message], replies: Sequence[Message]
) -> tuple[dict[str, Message], dict[str, str]]:
    """Pair replies with the clients their messages were for.

    Args:
        sent: Client id → the message pushed for it.
        replies: What came back.

    Returns:
        ``(answers, failures)``: client id → reply with content; client id → why nothing
        usable came back (an error reply's code and reason, or no reply at all).
    """
    by_id = {msg.metadata.message_id: cid for cid, msg in sent.items()}
    answers: dict[str, Message] = {}
    failures: dict[str, str] = {}
    for reply in replies:
        cid = by_id.get(reply.metadata.reply_to_message_id)
        if cid is None:
            continue  # a reply to another batch (late); never used
        if reply.has_error():
            failures[cid] = f"error reply (code {reply.error.code}): {reply.error.reason}"
        else:
            answers[cid] = reply
    for cid in sent:
        if cid not in answers and cid not in failures:
            failures[cid] = "no reply before the deadline"
    return answers, failures
