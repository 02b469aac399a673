"""A toy engine for fast method and round-loop tests: a 3-layer token model, no vision tower.

Its linear layers carry the real target names (``q_proj``, ``up_proj``, ``down_proj``) under a
``language_model`` module, so the real LoRA injection, methods and Simulator run on it in
milliseconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fedmllm.federation import Client, FederationConfig, Simulator

VOCAB, DIM = 13, 6
TARGETS = ["q_proj", "up_proj", "down_proj"]


class ToyBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d, d)
        self.up_proj = nn.Linear(d, 2 * d)
        self.down_proj = nn.Linear(2 * d, d)


class ToyLM(nn.Module):
    """Embedding → residual q_proj → residual MLP (up, tanh, down) → vocabulary head."""

    def __init__(self, vocab: int = VOCAB, d: int = DIM) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.language_model = ToyBlock(d)
        self.head = nn.Linear(d, vocab)
        self.config = SimpleNamespace(image_token_id=None)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, input_ids, attention_mask=None, labels=None) -> SimpleNamespace:
        lm = self.language_model
        h = self.embed(input_ids)
        h = h + lm.q_proj(h)
        h = h + lm.down_proj(torch.tanh(lm.up_proj(h)))
        logits = self.head(h)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return SimpleNamespace(loss=loss, logits=logits)


def collate(samples: list[Any]) -> dict[str, torch.Tensor]:
    ids = torch.tensor([s.ids for s in samples])
    labels = ids.clone()
    labels[:, :2] = -100  # the first two tokens are the "prompt"
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def toy_engine(seed: int = 0) -> SimpleNamespace:
    """A frozen toy model (seeded) with the engine attributes the simulator uses."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ToyLM()
    model.requires_grad_(False)
    return SimpleNamespace(model=model, collator=collate, gen_collator=collate, generate=None)


def toy_batches(seed: int, batch: int = 4, length: int = 5) -> Iterator[dict[str, torch.Tensor]]:
    """An endless seeded stream of random token batches."""
    g = torch.Generator().manual_seed(seed)
    while True:
        ids = torch.randint(0, VOCAB, (batch, length), generator=g)
        yield collate([SimpleNamespace(ids=row.tolist()) for row in ids])


class FakeFabric:
    """The four Fabric calls the round loop and methods make."""

    def to_device(self, obj: Any) -> Any:
        return obj

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def log_dict(self, *args: Any, **kwargs: Any) -> None:
        pass


def toy_clients(sizes: dict[str, int], seed: int = 0) -> list[Client]:
    """VQA-task clients with random token samples of their own token range (non-IID)."""
    g = torch.Generator().manual_seed(seed)
    clients = []
    for i, (cid, n) in enumerate(sizes.items()):
        lo = (3 * i) % (VOCAB - 4)
        samples = [
            SimpleNamespace(ids=torch.randint(lo, lo + 4, (5,), generator=g).tolist(), answer="a")
            for _ in range(n)
        ]
        clients.append(Client(cid, "vqa", samples, samples[:2]))
    return clients


def toy_simulator(method: Any, aggregator: Any, run_dir, **cfg: Any) -> Simulator:
    """A Simulator over three toy clients (sizes 6, 4, 8) with tiny round settings."""
    config = FederationConfig(
        rounds=cfg.pop("rounds", 2),
        local_steps=cfg.pop("local_steps", 2),
        batch_size=cfg.pop("batch_size", 2),
        lr=cfg.pop("lr", 0.05),
        eval_every=0,
        checkpoint=cfg.pop("checkpoint", False),
        **cfg,
    )
    clients = toy_clients({"c0": 6, "c1": 4, "c2": 8})
    return Simulator(FakeFabric(), method.engine, method, aggregator, clients, config, run_dir)


def lora_kwargs(**overrides: Any) -> dict[str, Any]:
    """Constructor arguments of a LoRA method on the toy engine (rank 2, no dropout)."""
    base = {
        "target_modules": TARGETS,
        "module_filter": "language_model",
        "r": 2,
        "alpha": 4.0,
        "dropout": 0.0,
        "grad_clip": 0.0,
    }
    return {**base, **overrides}
