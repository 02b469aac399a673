"""Sequence classification: an encoder (RoBERTa) with a classification head, as UniFLoW's GLUE runs.

The engine has the same face as the VLM engine (``model``, ``collator``, ``gen_collator``,
``generate``, ``info``), so every method and rule runs on it unchanged: a training batch carries
``labels`` (class ids) and the model's forward returns the cross-entropy; "generating" a batch
returns the arg-max label *names*, which the ``classification`` task scores by exact match
(= accuracy). A sample's ``question`` is the text; a sentence pair (RTE, MNLI) is
``"<sentence1> </s> <sentence2>"`` (:data:`PAIR_SEP`), split again by the collator and encoded
as the tokenizer's pair.

The classification head (RoBERTa's ``classifier.dense`` and ``classifier.out_proj``) is
randomly initialised, so it must train: the builder wraps both linears as
:class:`~fedmllm.lora.ModulesToSaveLinear` (PEFT's ``modules_to_save``). Every method that
injects adapters then trains the head in full, and, since its keys are in no LoRA/VeRA group
(group ``other``), the head *travels* and is averaged with ``share: all`` (its bytes are in
``docs/modality.md``, "Text-only federations").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from fedmllm.data.readers.glue import PAIR_SEP
from fedmllm.data.schema import Sample
from fedmllm.lora.modules_to_save import wrap_modules_to_save
from fedmllm.models.text_pretrain import pretrain_mlm
from fedmllm.models.tiny_vlm import count_parameters
from fedmllm.models.tokenizer import build_word_tokenizer

HEAD = ["dense", "out_proj"]
HEAD_FILTER = r"(^|\.)classifier\."


def split_pair(text: str) -> tuple[str, str | None]:
    """``(sentence1, sentence2)`` of a pair question, ``(text, None)`` for a single sentence."""
    first, sep, second = text.partition(PAIR_SEP.strip())
    return (first.strip(), second.strip()) if sep else (text.strip(), None)


class ClassificationCollator:
    """Samples -> ``input_ids``, ``attention_mask``, ``labels`` (and ``samples`` to generate).

    Args:
        tokenizer: Any tokenizer that takes ``(text, text_pair)``.
        labels: Label names; a sample's ``answer`` must be one of them.
        max_length: Longest sequence in tokens (longer ones are truncated).
        generate: Also return the raw ``samples`` (the evaluation batch).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        labels: Sequence[str],
        max_length: int = 64,
        generate: bool = False,
    ) -> None:
        self.tokenizer, self.labels = tokenizer, list(labels)
        self.index = {name: i for i, name in enumerate(self.labels)}
        self.max_length, self.generate = max_length, generate

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """One padded batch (right padding)."""
        firsts, seconds = zip(*(split_pair(s.question) for s in samples), strict=True)
        pairs = None if all(b is None for b in seconds) else [b or "" for b in seconds]
        enc = self.tokenizer(
            list(firsts),
            pairs,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        unknown = sorted({s.answer for s in samples} - set(self.index))
        if unknown:
            raise ValueError(
                f"answers {unknown} are not among the classifier's labels {self.labels}: set "
                "model.labels to the benchmark's label names"
            )
        batch: dict[str, Any] = {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": torch.tensor([self.index[s.answer] for s in samples]),
        }
        if self.generate:
            batch["samples"] = list(samples)
        return batch


@dataclass
class ClassifierEngine:
    """A sequence classifier with the engine's face (see the module docstring).

    Attributes:
        model: ``*ForSequenceClassification`` (base frozen, head wrapped to train).
        tokenizer: Its tokenizer.
        labels: Label names, in the head's output order.
        collator: Training collator.
        gen_collator: Evaluation collator (with ``samples``).
        family: ``roberta`` (or the loaded model's type).
        info: Provenance (parameter counts, head bytes).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    collator: ClassificationCollator
    gen_collator: ClassificationCollator
    family: str = "roberta"
    info: dict[str, Any] = field(default_factory=dict)
    template: Any = None
    image_size: int | None = None
    num_image_tokens: int | None = None

    def freeze_base(self) -> None:
        """Turn off gradients of every current parameter (adapters come later)."""
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], max_new_tokens: int = 1) -> list[str]:
        """The arg-max label name of every row (``max_new_tokens`` is ignored)."""
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            logits = self.model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
            ).logits
        finally:
            self.model.train(was_training)
        return [self.labels[int(i)] for i in logits.argmax(-1)]


def _finish(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    labels: list[str],
    max_length: int,
    family: str,
    info: dict[str, Any],
) -> ClassifierEngine:
    wrapped = wrap_modules_to_save(model, HEAD, HEAD_FILTER)
    head = sum(
        p.numel() * p.element_size()
        for n, p in model.named_parameters()
        if ".modules_to_save." in n
    )
    info = {**info, "num_parameters": count_parameters(model), "head": wrapped}
    info["head_bytes"] = head
    engine = ClassifierEngine(
        model=model.eval(),
        tokenizer=tokenizer,
        labels=labels,
        collator=ClassificationCollator(tokenizer, labels, max_length),
        gen_collator=ClassificationCollator(tokenizer, labels, max_length, generate=True),
        family=family,
        info=info,
    )
    engine.freeze_base()
    return engine


def build_tiny_classifier(
    public: Sequence[Sample],
    vocabulary: Sequence[str],
    labels: Sequence[str],
    config: dict[str, Any] | None = None,
    max_length: int = 64,
    seed: int = 0,
    pretrain: dict[str, Any] | None = None,
    modules: dict[str, Any] | None = None,
) -> ClassifierEngine:
    """A tiny RoBERTa classifier built from a config with the benchmark's word tokenizer.

    The encoder is a seeded random initialisation, then (``pretrain.steps > 0``) trained as a
    masked language model on the public split's texts
    (:func:`fedmllm.models.text_pretrain.pretrain_mlm`); the head is always new.

    Args:
        public: The benchmark's public split (its texts join the tokenizer's word list).
        vocabulary: The benchmark's word list.
        labels: Label names (``benchmark.labels``).
        config: ``RobertaConfig`` fields (sizes); vocabulary, special ids, positions and the
            label count are set here.
        max_length: Longest input in tokens.
        seed: Seed of the initialisation (the caller's RNG stream is left alone).
        pretrain: ``steps``, ``batch_size``, ``lr`` of the MLM pretraining (steps 0: none).
        modules: Module-name regexes the method configs read (not used here).

    Raises:
        ValueError: Fewer than two labels.
    """
    labels = [str(x) for x in labels]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"model.labels needs two or more distinct names, got {labels}")
    texts = [t for s in public for t in (s.question, s.answer)]
    tokenizer = build_word_tokenizer(list(vocabulary), texts)
    cfg = RobertaConfig(
        **{
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            **dict(config or {}),
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "max_position_embeddings": max_length + tokenizer.pad_token_id + 2,
            "type_vocab_size": 1,
            "num_labels": len(labels),
        }
    )
    info: dict[str, Any] = {"from_config": True}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RobertaForSequenceClassification(cfg)
        steps = int((pretrain or {}).get("steps", 0))
        if steps > 0:
            texts = [s.question for s in public]
            info["pretrain"] = pretrain_mlm(model, tokenizer, texts, dict(pretrain or {}))
    return _finish(model, tokenizer, labels, max_length, "roberta", info)


def build_hf_classifier(
    path: str,
    labels: Sequence[str],
    public: Sequence[Sample] = (),
    vocabulary: Sequence[str] = (),
    max_length: int = 128,
    local_files_only: bool = True,
    modules: dict[str, Any] | None = None,
) -> ClassifierEngine:
    """A pretrained encoder (e.g. ``roberta-base`` in a local folder) with a new head.

    Args:
        path: Local directory or cached hub id.
        labels: Label names (``benchmark.labels``).
        public: Ignored (the tiny builder's input).
        vocabulary: Ignored.
        max_length: Longest input in tokens.
        local_files_only: False lets transformers download.
        modules: Module-name regexes the method configs read (not used here).
    """
    labels = [str(x) for x in labels]
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), local_files_only=local_files_only
    )
    family = str(getattr(model.config, "model_type", "encoder"))
    return _finish(model, tokenizer, labels, max_length, family, {"path": path})
