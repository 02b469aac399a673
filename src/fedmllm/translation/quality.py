"""Translation quality: a modality classifier's accuracy and a Fréchet feature distance.

The probe is a small CNN trained on real images with their modality tags (the benchmark's
public split, which no client holds). A translation into ``t`` counts as correct when the
probe names ``t``. The Fréchet distance (FID's formula, on the probe's penultimate features
instead of Inception's) compares translated-into-``t`` images with real ``t`` images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fedmllm.translation.models import ModalityClassifier, to_gray_tensor


def train_modality_classifier(
    images: Sequence[np.ndarray],
    modalities: Sequence[str],
    classes: Sequence[str],
    seed: int,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-3,
    max_epochs: float = 10.0,
) -> ModalityClassifier:
    """A :class:`ModalityClassifier` trained on real images labelled by modality, for
    ``min(steps, ceil(max_epochs·n / batch_size))`` Adam steps."""
    if not images:
        raise ValueError("the modality classifier needs real images; the public split is empty")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = to_gray_tensor(images)
    y = torch.tensor([list(classes).index(m) for m in modalities])
    model = ModalityClassifier(len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(max(1, min(steps, math.ceil(max_epochs * len(x) / batch_size)))):
        idx = torch.from_numpy(rng.choice(len(x), size=min(batch_size, len(x)), replace=False))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def predict_modalities(
    model: ModalityClassifier, images: Sequence[np.ndarray], classes: Sequence[str]
) -> list[str]:
    """The probe's modality for each image."""
    if not images:
        return []
    return [classes[int(i)] for i in model(to_gray_tensor(images)).argmax(dim=1)]


def modality_accuracy(
    model: ModalityClassifier,
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    classes: Sequence[str],
) -> float | None:
    """Fraction of ``images`` the probe assigns to their ``labels`` (None when empty)."""
    if not images:
        return None
    pred = predict_modalities(model, images, classes)
    return float(np.mean([p == t for p, t in zip(pred, labels, strict=True)]))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|μa − μb|² + tr(Σa + Σb − 2(Σa Σb)^{1/2})`` of two feature sets (rows: samples).

    The trace of the matrix square root is the sum of the square roots of the eigenvalues
    of ``Σa Σb`` (real and non-negative up to round-off for covariance matrices).
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Fréchet distance needs >= 2 samples per set, got {len(a)}, {len(b)}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(cov_a @ cov_b)
    tr_sqrt = float(np.sqrt(np.clip(eig.real, 0.0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


@torch.no_grad()
def probe_features(model: ModalityClassifier, images: Sequence[np.ndarray]) -> np.ndarray:
    """The probe's penultimate features (rows: images)."""
    return model.features(to_gray_tensor(images)).numpy().astype(np.float64)
