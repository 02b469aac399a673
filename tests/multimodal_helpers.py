"""Shared pieces of the modality-expert and stage-schedule tests: a tiny engine, samples, Fabric."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from fedmllm.data.schema import Sample
from fedmllm.models import TinyVLMConfig, build_tiny_vlm
from fedmllm.models.engine import Engine

WORDS = ["is", "there", "a", "lesion", "yes", "no", "findings", "shows", "one", "two"]
# Smaller than the test_models one: every forward here takes milliseconds.
TINY = TinyVLMConfig(
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    vision_intermediate=64,
    patch_size=8,
    image_size=16,
    text_hidden=32,
    text_layers=2,
    text_heads=2,
    text_intermediate=64,
    max_position_embeddings=64,
)


def make_samples(modality: str, n: int, seed: int = 0, image: bool = True) -> list[Sample]:
    """Yes/no lesion questions; text-only samples state the finding in the question."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lesion = i % 2 == 0
        img = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
        if lesion:
            img[2:8, 2:8] = 250
        question = "is there a lesion?"
        if not image:
            question = f"findings: {'one lesion' if lesion else 'no lesion'}. {question}"
        answer = "yes" if lesion else "no"
        out.append(Sample(img if image else None, modality, question, answer, "vqa", "closed"))
    return out


def tiny_engine(tmp_path: Path) -> Engine:
    """A seeded, unpretrained tiny LLaVA engine (touches no cache)."""
    torch.manual_seed(0)
    public = make_samples("ct", 4) + make_samples("ct", 2, image=False)
    return build_tiny_vlm(tmp_path, public, WORDS, config=TINY, pretrain={"steps": 0})


def cpu_fabric() -> L.Fabric:
    """A launched single-process CPU Fabric without loggers."""
    fabric = L.Fabric(accelerator="cpu", devices=1, loggers=[])
    fabric.launch()
    return fabric


@torch.no_grad()
def randomise(model: torch.nn.Module, pattern: str, seed: int, scale: float = 0.5) -> None:
    """Fill every trainable parameter whose name contains ``pattern`` with seeded noise.

    LoRA's B starts at zero, which hides both routing mistakes and gradients to A.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.requires_grad and pattern in name:
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
