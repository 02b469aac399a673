"""Reading a client's reply on the server, and refusing what must not be aggregated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flwr.app import Message

from fedmllm.deploy.flower.client_app import (
    BASE_ROUND,
    CLIENT_ID,
    CONFIG,
    DOWN_BYTES,
    EXTRAS,
    METRICS,
    NUM_EXAMPLES,
    UPDATE,
)
from fedmllm.deploy.flower.records import check_state, get_state
from fedmllm.types import ClientUpdate, state_nbytes


@dataclass
class TrainReply:
    """A parsed training reply.

    Attributes:
        update: The update (None when rejected).
        problems: Why it was rejected (empty when accepted).
        down_bytes: Bytes of the received state the client needed (its own count).
        base_round: The last base-weight round the node has applied.
        up_bytes: Bytes of tensors it sent.
    """

    update: ClientUpdate | None
    problems: list[str] = field(default_factory=list)
    down_bytes: int = 0
    base_round: int | None = None
    up_bytes: int = 0


def parse_train_reply(
    client_id: str,
    reply: Message,
    allowed: Mapping[str, tuple[int, ...]],
    allowed_extras: Mapping[str, tuple[int, ...]],
) -> TrainReply:
    """Check a training reply and turn it into a ``ClientUpdate``.

    Args:
        client_id: The client the message was for.
        reply: Its reply (with content).
        allowed: Keys the client may send this round, with their shapes.
        allowed_extras: Keys and shapes of the extras it may send.

    Returns:
        The update, or the problems that reject it: missing records, another client's
        reply, unexpected keys, wrong shapes, NaN/Inf tensors (update and extras), a bad
        ``num-examples``.
    """
    content = reply.content
    missing = [k for k in (UPDATE, METRICS, CONFIG) if k not in content]
    if missing:
        return TrainReply(None, [f"reply lacks {missing}"])
    sender = str(content[CONFIG].get(CLIENT_ID, ""))
    if sender != client_id:
        return TrainReply(None, [f"reply names client {sender!r}, expected {client_id!r}"])
    try:
        state, extras = get_state(content, UPDATE), get_state(content, EXTRAS)
    except ValueError as e:
        return TrainReply(None, [str(e)])
    problems = check_state(state, allowed, "update")
    problems += check_state(extras, allowed_extras, "extras")
    metrics = dict(content[METRICS])
    n = metrics.pop(NUM_EXAMPLES, None)
    if not isinstance(n, int) or n <= 0:
        problems.append(f"{NUM_EXAMPLES} must be a positive integer, got {n!r}")
    up = state_nbytes(state) + state_nbytes(extras)
    base_round = content[CONFIG].get(BASE_ROUND)
    parsed = TrainReply(
        None,
        problems,
        int(metrics.pop(DOWN_BYTES, 0)),
        int(base_round) if base_round is not None else None,
        up,
    )
    if not problems:
        train_metrics = {
            k.removeprefix("train/"): float(v) for k, v in metrics.items() if k.startswith("train/")
        }
        parsed.update = ClientUpdate(client_id, state, int(n), train_metrics, extras)
    return parsed


def parse_scores(client_id: str, reply: Message) -> dict[str, float]:
    """The scores of an evaluation reply.

    Raises:
        ValueError: If the reply has no scores or names another client.
    """
    content = reply.content
    if METRICS not in content or CONFIG not in content:
        raise ValueError(f"evaluation reply of {client_id!r} lacks scores")
    sender = str(content[CONFIG].get(CLIENT_ID, ""))
    if sender != client_id:
        raise ValueError(f"evaluation reply names client {sender!r}, expected {client_id!r}")
    return {k: float(v) for k, v in content[METRICS].items()}
