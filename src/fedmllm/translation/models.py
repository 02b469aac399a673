"""Networks of the translation stage: generator, patch discriminator, modality classifier.

Images are the benchmark's grey-level ``HxWx3`` uint8 arrays; the networks see one channel
(the mean of the three) scaled to ``[0, 1]``, and translated images are written back as three
equal channels.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

TEXT_BUCKETS = 1024


def text_tokens(text: str, buckets: int = TEXT_BUCKETS) -> list[int]:
    """Word ids of ``text`` by CRC32 hashing (the same in every process, unlike ``hash``)."""
    words = [w.strip("?.,;:!") for w in text.lower().split()]
    return [zlib.crc32(w.encode()) % buckets for w in words if w] or [0]


def to_gray_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """``HxWx3`` uint8 arrays -> a ``(B, 1, H, W)`` float tensor in ``[0, 1]``."""
    arr = np.stack([np.asarray(im, dtype=np.float32).mean(axis=2) for im in images])
    return torch.from_numpy(arr / 255.0).unsqueeze(1)


def to_uint8_images(x: torch.Tensor) -> list[np.ndarray]:
    """A ``(B, 1, H, W)`` tensor in ``[0, 1]`` -> ``HxWx3`` uint8 arrays (grey, 3 channels)."""
    g = (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).squeeze(1).numpy()
    return [np.repeat(im[:, :, None], 3, axis=2) for im in g]


class HashedText(nn.Module):
    """Mean of learned embeddings of the hashed words of each text."""

    def __init__(self, dim: int, buckets: int = TEXT_BUCKETS) -> None:
        super().__init__()
        self.buckets = buckets
        self.bag = nn.EmbeddingBag(buckets, dim, mode="mean")

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        ids = [text_tokens(t, self.buckets) for t in texts]
        offsets = torch.tensor([0, *np.cumsum([len(i) for i in ids])[:-1]], dtype=torch.long)
        flat = torch.tensor([w for i in ids for w in i], dtype=torch.long)
        return self.bag(flat, offsets)


class FiLMBlock(nn.Module):
    """Residual block ``x + conv(act(γ(c)·conv(x) + β(c)))``."""

    def __init__(self, width: int, cond_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * width)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(cond).chunk(2, dim=1)
        h = self.conv1(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return x + self.conv2(nn.functional.leaky_relu(h, 0.2))


class Translator(nn.Module):
    """One generator for every direction: ``G(x, source, target, text)``.

    A small U-Net: a full-resolution stem, one stride-2 downsampling, residual blocks at half
    resolution, a transposed-conv upsampling and a head that also sees the stem's features.

    The condition ``c = [text(question + answer), emb(source), emb(target)]`` modulates every
    residual block (FiLM), so one set of weights translates between any pair of modalities and
    reads the clinical content (organ, lesions) from the sample's text.

    Args:
        modalities: The benchmark's modality tags (embedding rows, in order).
        width: Channels of the stem (the half-resolution trunk has twice as many).
        blocks: Residual blocks.
        cond_dim: Size of each of the three condition parts.
    """

    def __init__(
        self, modalities: Sequence[str], width: int = 8, blocks: int = 2, cond_dim: int = 32
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.text = HashedText(cond_dim)
        self.modality = nn.Embedding(len(self.modalities), cond_dim)
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.down = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)
        self.blocks = nn.ModuleList(FiLMBlock(2 * width, 3 * cond_dim) for _ in range(blocks))
        self.up = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)
        self.head = nn.Conv2d(2 * width, 1, 3, padding=1)

    def index(self, tags: Sequence[str]) -> torch.Tensor:
        """Embedding rows of modality tags (an unknown tag is an error naming it)."""
        unknown = sorted(set(tags) - set(self.modalities))
        if unknown:
            raise ValueError(f"translator has no modality {unknown}; it knows {self.modalities}")
        return torch.tensor([self.modalities.index(t) for t in tags], dtype=torch.long)

    def forward(
        self,
        x: torch.Tensor,
        source: Sequence[str],
        target: Sequence[str],
        texts: Sequence[str],
    ) -> torch.Tensor:
        """Translate ``(B, 1, H, W)`` images in ``[0, 1]`` from ``source`` to ``target``."""
        cond = torch.cat(
            [
                self.text(texts),
                self.modality(self.index(source)),
                self.modality(self.index(target)),
            ],
            dim=1,
        )
        skip = nn.functional.leaky_relu(self.stem(2 * x - 1), 0.2)
        h = nn.functional.leaky_relu(self.down(skip), 0.2)
        for block in self.blocks:
            h = block(h, cond)
        h = nn.functional.leaky_relu(self.up(h), 0.2)
        return torch.sigmoid(self.head(torch.cat([h, skip], dim=1)))


class PatchDiscriminator(nn.Module):
    """Real/fake logits per image patch (a ``(B, 1, H/4, W/4)`` map)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2 * x - 1)


class ModalityClassifier(nn.Module):
    """Small CNN that names the modality of an image (the translation-quality probe)."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))
