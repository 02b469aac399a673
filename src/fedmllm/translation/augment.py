"""Translated copies of a client's own training samples (the VQA augmentation).

Each chosen training sample of modality ``s`` gets one copy whose image is ``G(x, s→t, text)``
for a target ``t`` among the sample's allowed targets, and whose modality tag is ``t`` (so the
modality-expert LoRA routes it to expert ``t``). The question stays; an answer that names the
modality is rewritten by the caller's ``answer_for``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from fedmllm.data.schema import Sample
from fedmllm.translation.federated import TranslationItem
from fedmllm.translation.models import Translator, to_gray_tensor, to_uint8_images

TRANSLATED = "translated_from"
"""``Sample.meta`` key of a translated copy: the source modality."""


def condition_text(sample: Sample) -> str:
    """The text a translator is conditioned on: the sample's question and answer."""
    return f"{sample.question} {sample.answer}"


def translation_items(
    samples: Sequence[Sample], targets_of: Callable[[Sample], tuple[str, ...]]
) -> list[TranslationItem]:
    """The image samples of a client as the translation stage sees them."""
    return [
        TranslationItem(np.asarray(s.image), s.modality, condition_text(s), targets_of(s))
        for s in samples
        if isinstance(s.image, np.ndarray)
    ]


@torch.no_grad()
def translate_samples(
    translator: Translator,
    samples: Sequence[Sample],
    targets_of: Callable[[Sample], tuple[str, ...]],
    answer_for: Callable[[Sample, str], str],
    fraction: float,
    seed: int,
    batch_size: int = 64,
) -> list[tuple[Sample, Sample]]:
    """``(source, translated copy)`` pairs for ``round(fraction·len(samples))`` of ``samples``
    (fewer if some have no target).

    The samples are taken in a seeded random order; the k-th chosen sample with a target goes
    to ``targets[k mod len(targets)]``, so the targets are used in turn.
    """
    if fraction < 0:
        raise ValueError(f"benchmark.translation_fraction must be >= 0, got {fraction}")
    order = np.random.default_rng(seed).permutation(len(samples))
    want = int(round(fraction * len(samples)))
    chosen: list[tuple[Sample, str]] = []
    for k, i in enumerate(order):
        if len(chosen) >= want:
            break
        s = samples[int(i)]
        targets = targets_of(s)
        if targets and isinstance(s.image, np.ndarray):
            chosen.append((s, targets[k % len(targets)]))
    out: list[tuple[Sample, Sample]] = []
    for start in range(0, len(chosen), batch_size):
        part = chosen[start : start + batch_size]
        x = to_gray_tensor([s.image for s, _t in part])
        y = translator(
            x, [s.modality for s, _t in part], [t for _s, t in part],
            [condition_text(s) for s, _t in part],
        )  # fmt: skip
        for (s, t), image in zip(part, to_uint8_images(y), strict=True):
            meta = {**s.meta, TRANSLATED: s.modality}
            copy = replace(s, image=image, modality=t, answer=answer_for(s, t), meta=meta)
            out.append((s, copy))
    return out
