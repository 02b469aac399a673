"""Case embeddings: the image through the frozen vision tower (or raw pixels), the question text.

A case's vector is ``[w_img * img / |img|, w_txt * txt / |txt|]``, so the inner product of two
vectors is ``w_img² cos(img, img') + w_txt² cos(txt, txt')``: a weighted sum of cosines. The
encoders read only the frozen base (they run before any adapter is injected), so the vectors —
and the index built from them — do not depend on adapters or rounds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fedmllm.data.collate import image_to_tensor
from fedmllm.data.schema import Sample

IMAGE_ENCODERS = ("vision_tower", "pixels", "none")
TEXT_ENCODERS = ("hashing", "none")
_WORD = re.compile(r"[a-z0-9]+")


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def hashed_text(texts: Sequence[str], dim: int = 256) -> np.ndarray:
    """Feature-hashed bag of lower-case words and word bigrams, unit L2 rows (``N x dim``).

    Model-free and deterministic (SHA-1 of each feature, not Python's salted ``hash``), so a
    client's index is the same in every process.
    """
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        words = _WORD.findall(text.lower())
        for feat in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
            digest = hashlib.sha1(feat.encode()).digest()
            out[i, int.from_bytes(digest[:4], "little") % dim] += 1.0
    return _unit(out)


def pixel_embedding(samples: Sequence[Sample], size: int = 8) -> np.ndarray:
    """Each image resized to ``size x size`` RGB, flattened and centred, unit L2 rows."""
    rows = [image_to_tensor(s.image, size).flatten().numpy() for s in samples]
    x = np.stack(rows).astype(np.float32)
    return _unit(x - x.mean(axis=1, keepdims=True))


def _pool(features: Any) -> torch.Tensor:
    """Mean over image tokens of what ``get_image_features`` returns, one row per image."""
    feats = getattr(features, "pooler_output", features)
    if isinstance(feats, torch.Tensor):
        return feats.float().mean(dim=1) if feats.dim() == 3 else feats.float()
    if isinstance(feats, list | tuple):
        return torch.stack([f.float().reshape(-1, f.shape[-1]).mean(dim=0) for f in feats])
    raise TypeError(f"cannot pool image features of type {type(feats).__name__}")


@torch.no_grad()
def vision_tower_embedding(
    engine: Any, samples: Sequence[Sample], batch_size: int = 64
) -> np.ndarray:
    """Mean-pooled image features of the engine's frozen vision tower (+ projector), unit rows.

    The pixels are what the engine's generation collator gives the model, so any model family
    with ``get_image_features`` (LLaVA, Qwen2-VL, Idefics3) is served the same way.

    Raises:
        ValueError: The engine's model has no ``get_image_features``; the message names
            ``retrieval.image_encoder=pixels`` as the fix.
    """
    model = engine.model
    if not hasattr(model, "get_image_features"):
        raise ValueError(
            f"retrieval.image_encoder=vision_tower: {type(model).__name__} has no "
            "get_image_features; use retrieval.image_encoder=pixels"
        )
    param = next(model.parameters())
    rows = []
    for start in range(0, len(samples), batch_size):
        batch = engine.gen_collator(list(samples[start : start + batch_size]))
        extra = {k: batch[k] for k in ("image_grid_thw", "image_sizes") if k in batch}
        pixels = batch["pixel_values"].to(device=param.device, dtype=param.dtype)
        rows.append(_pool(model.get_image_features(pixel_values=pixels, **extra)).cpu())
    return _unit(torch.cat(rows).numpy())


class CaseEncoder:
    """Sample -> retrieval vector, as configured (see the module docstring).

    Args:
        image_encoder: ``vision_tower`` (the engine's frozen tower), ``pixels`` (downsampled
            raw pixels, no model) or ``none``.
        text_encoder: ``hashing`` (hashed words and bigrams of the question) or ``none``.
        image_weight: ``w_img``.
        text_weight: ``w_txt``.
        text_dim: Width of the hashed text vector.
        batch_size: Images per vision-tower forward.
    """

    def __init__(
        self,
        image_encoder: str = "vision_tower",
        text_encoder: str = "hashing",
        image_weight: float = 1.0,
        text_weight: float = 1.0,
        text_dim: int = 256,
        batch_size: int = 64,
    ) -> None:
        if image_encoder not in IMAGE_ENCODERS:
            raise ValueError(
                f"retrieval.image_encoder must be one of {IMAGE_ENCODERS}, got {image_encoder!r}"
            )
        if text_encoder not in TEXT_ENCODERS:
            raise ValueError(
                f"retrieval.text_encoder must be one of {TEXT_ENCODERS}, got {text_encoder!r}"
            )
        if image_encoder == "none" and text_encoder == "none":
            raise ValueError("retrieval: image_encoder and text_encoder cannot both be none")
        if image_weight < 0 or text_weight < 0:
            raise ValueError("retrieval.image_weight and retrieval.text_weight must be >= 0")
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_weight, self.text_weight = float(image_weight), float(text_weight)
        self.text_dim, self.batch_size = int(text_dim), int(batch_size)

    def describe(self) -> dict[str, Any]:
        """The settings that shape the vectors (part of the index cache key)."""
        return {
            "image_encoder": self.image_encoder,
            "text_encoder": self.text_encoder,
            "image_weight": self.image_weight,
            "text_weight": self.text_weight,
            "text_dim": self.text_dim,
        }

    def encode(self, samples: Sequence[Sample], engine: Any = None) -> np.ndarray:
        """``N x D`` float32 vectors of ``samples`` (D fixed by the settings and the engine)."""
        parts = []
        has_image = all(s.image is not None for s in samples)
        if self.image_encoder != "none":
            if not has_image:
                raise ValueError(
                    "retrieval.image_encoder needs every sample to have an image; set "
                    "retrieval.image_encoder=none for text-only clients"
                )
            if self.image_encoder == "pixels":
                img = pixel_embedding(samples)
            else:
                img = vision_tower_embedding(engine, samples, self.batch_size)
            parts.append(self.image_weight * img)
        if self.text_encoder == "hashing":
            txt = hashed_text([s.question for s in samples], self.text_dim)
            parts.append(self.text_weight * txt)
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
