"""Masked-language-model pretraining of the tiny text encoder on the public split.

RoBERTa's recipe at toy scale: 15% of the non-special tokens are chosen, 80% of those replaced
by ``<unk>`` (the word tokenizer has no mask token; ``<unk>`` never occurs in generated text),
10% by a random word, 10% kept; the loss is the cross-entropy on the chosen positions through a
tied-embedding LM head that is dropped afterwards. Only the encoder (``roberta.*``) is kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, RobertaForMaskedLM


def pretrain_mlm(
    classifier: Any,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    options: dict[str, Any],
) -> dict[str, float]:
    """Train ``classifier.roberta`` as an MLM on ``texts`` in place; returns loss and wall time.

    Args:
        classifier: A ``RobertaForSequenceClassification`` (its encoder is trained).
        tokenizer: The word tokenizer.
        texts: The public split's texts.
        options: ``steps``, ``batch_size`` (32), ``lr`` (1e-3), ``max_length`` (64).

    Raises:
        ValueError: No texts to pretrain on.
    """
    if not texts:
        raise ValueError(
            "model.pretrain.steps > 0 needs public texts: set benchmark.public_size=<n> or "
            "model.pretrain.steps=0"
        )
    steps, batch = int(options["steps"]), int(options.get("batch_size", 32))
    mlm = RobertaForMaskedLM(classifier.config)
    mlm.roberta = classifier.roberta  # shared: the classifier's encoder is what trains
    opt = torch.optim.AdamW(mlm.parameters(), lr=float(options.get("lr", 1e-3)))
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    gen = torch.Generator().manual_seed(0)
    mlm.train()
    start, loss = time.perf_counter(), torch.tensor(0.0)
    for _ in range(steps):
        idx = torch.randint(len(texts), (batch,), generator=gen)
        enc = tokenizer(
            [texts[i] for i in idx],
            padding=True,
            truncation=True,
            max_length=int(options.get("max_length", 64)),
            return_tensors="pt",
            return_token_type_ids=False,
        )
        ids = enc["input_ids"]
        chosen = (torch.rand(ids.shape, generator=gen) < 0.15) & ~torch.isin(ids, special)
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(ids.shape, generator=gen)
        inputs = torch.where(chosen & (roll < 0.8), tokenizer.unk_token_id, ids)
        rand_words = torch.randint(len(special), len(tokenizer), ids.shape, generator=gen)
        inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), rand_words, inputs)
        loss = mlm(input_ids=inputs, attention_mask=enc["attention_mask"], labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    classifier.eval()
    wall = time.perf_counter() - start
    return {"steps": float(steps), "final_loss": float(loss.detach()), "wall_s": wall}
