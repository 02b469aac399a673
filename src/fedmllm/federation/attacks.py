"""Byzantine clients to test robust rules against (Hydra group ``attack/``).

An attack lives in the client half of the round (:class:`~fedmllm.federation.client_round.
LocalTrainer`), so the same attacking client behaves the same in the Simulator and on a Flower
node. Model-poisoning attacks rewrite what the client sends, before DP and the wire encoding;
``label_flip`` poisons the client's training data instead and sends an honest update of it.

With ``x`` the global state the client received and ``x_k`` its trained state (shared keys),
``Δ = x_k − x``:

- ``sign_flip``: sends ``x − scale·Δ`` (the update reversed and magnified; ×10 by default);
- ``scaled``: sends ``x + scale·Δ``;
- ``gaussian``: sends ``x + N(0, sigma²)`` per entry (its training thrown away);
- ``free_rider``: sends ``x`` back (Δ = 0) while still claiming its sample count;
- ``label_flip``: trains on wrong answers: each answer is replaced by another answer of the
  same question type (``meta["qtype"]``, else the answer type) from the client's own data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from fedmllm.types import AdapterState

ATTACKS = ("none", "sign_flip", "scaled", "gaussian", "label_flip", "free_rider")
MODEL_ATTACKS = ("sign_flip", "scaled", "gaussian", "free_rider")


@dataclass(frozen=True)
class Attack:
    """Which clients attack and how.

    Attributes:
        name: One of :data:`ATTACKS`.
        clients: k, the first k training clients in the run's order, or a list of client ids.
        scale: The factor of ``sign_flip`` and ``scaled``.
        sigma: The standard deviation of ``gaussian``.
    """

    name: str = "none"
    clients: int | tuple[str, ...] = 0
    scale: float = 10.0
    sigma: float = 0.1

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Attack:
        """The attack of an ``attack/`` config node (empty or None: no attack).

        Raises:
            ValueError: An unknown attack name or a bad number, naming the option.
        """
        cfg = dict(cfg or {})
        name = str(cfg.get("name", "none"))
        if name not in ATTACKS:
            raise ValueError(f"attack.name={name!r} is unknown: use one of {', '.join(ATTACKS)}")
        clients = cfg.get("clients", 0)
        if isinstance(clients, int | float):
            if int(clients) < 0:
                raise ValueError(f"attack.clients must be >= 0 or a list of ids, got {clients}")
            clients = int(clients)
        else:
            clients = tuple(str(c) for c in clients)
        scale, sigma = float(cfg.get("scale", 10.0)), float(cfg.get("sigma", 0.1))
        if sigma < 0:
            raise ValueError(f"attack.sigma must be >= 0, got {sigma}")
        return cls(name, clients, scale, sigma)

    def attackers(self, client_ids: Sequence[str]) -> list[str]:
        """The attacking clients among the run's ``client_ids`` (in their order).

        Raises:
            ValueError: ``clients`` names an id the run does not have, or k exceeds K.
        """
        if self.name == "none":
            return []
        if isinstance(self.clients, int):
            if self.clients > len(client_ids):
                raise ValueError(
                    f"attack.clients={self.clients} but the run has {len(client_ids)} clients"
                )
            return list(client_ids[: self.clients])
        unknown = sorted(set(self.clients) - set(client_ids))
        if unknown:
            raise ValueError(f"attack.clients names unknown clients {unknown}: use {client_ids}")
        return [c for c in client_ids if c in self.clients]

    def hits(self, client_id: str, client_idx: int) -> bool:
        """Whether the client at position ``client_idx`` of the run's order attacks."""
        if self.name == "none":
            return False
        if isinstance(self.clients, int):
            return client_idx < self.clients
        return client_id in self.clients

    def poison_data(self, train: Sequence[Any]) -> list[Any]:
        """``label_flip``'s training data: every answer swapped for another of its group."""
        groups: dict[Any, list[str]] = {}
        for s in train:
            groups.setdefault(_group(s), []).append(s.answer)
        wrong = {}
        for g, answers in groups.items():
            uniq = sorted(set(answers))
            for i, a in enumerate(uniq):  # a derangement when the group has 2+ answers
                wrong[(g, a)] = uniq[(i + 1) % len(uniq)]
        return [replace(s, answer=wrong[(_group(s), s.answer)]) for s in train]

    def tamper(self, shared: AdapterState, received: AdapterState, seed: int) -> AdapterState:
        """What a model-poisoning client sends instead of ``shared`` (keys it did not
        receive are sent as trained)."""
        out: AdapterState = {}
        gen = torch.Generator().manual_seed(seed)
        for key, x_k in shared.items():
            if key not in received:
                out[key] = x_k
                continue
            x = received[key].to(device=x_k.device, dtype=x_k.dtype)
            if self.name == "sign_flip":
                out[key] = x - self.scale * (x_k - x)
            elif self.name == "scaled":
                out[key] = x + self.scale * (x_k - x)
            elif self.name == "gaussian":
                noise = torch.randn(x_k.shape, generator=gen, dtype=torch.float64)
                out[key] = x + (self.sigma * noise).to(device=x_k.device, dtype=x_k.dtype)
            else:  # free_rider
                out[key] = x.clone()
        return out


def _group(sample: Any) -> Any:
    meta = getattr(sample, "meta", None) or {}
    return meta.get("qtype", getattr(sample, "answer_type", None))
