"""Sub-styles: the scanner and protocol differences inside one modality.

Each modality has four sub-styles (window/contrast, noise, blur and one modality-specific
knob). The public split draws sub-styles 0-2 only; sub-style 3 is a "site scanner" that only
client data uses, so a client's LoRA has an image shift to adapt to, not only a text shift.
Each instance jitters its sub-style a little, and the exact values land in the scene record.
"""

from __future__ import annotations

import numpy as np

from fedmllm.data.synthetic import weighted_index

NUM_STYLES = 4
PUBLIC_STYLES = (0, 1, 2)

# gain/offset: window applied at the end; noise: std of the modality's noise; blur: Gaussian
# sigma in pixels at 32 px; extra: bias-field strength (mri), exposure gradient (xray), depth
# attenuation (us), unused (ct); speckle: multiplicative speckle strength (us only).
_STYLES: dict[str, tuple[dict[str, float], ...]] = {
    "ct": (
        {"gain": 1.1, "offset": 0.0, "noise": 0.03, "blur": 0.0, "extra": 0.0},  # soft window
        {"gain": 1.0, "offset": 0.0, "noise": 0.025, "blur": 0.55, "extra": 0.0},  # smooth kernel
        {"gain": 0.8, "offset": 0.03, "noise": 0.03, "blur": 0.0, "extra": 0.0},  # wide window
        {"gain": 1.15, "offset": -0.03, "noise": 0.06, "blur": 0.0, "extra": 0.0},  # sharp, noisy
    ),
    "mri": (
        {"gain": 1.0, "offset": 0.0, "noise": 0.02, "blur": 0.6, "extra": 0.15},
        {"gain": 1.1, "offset": 0.0, "noise": 0.03, "blur": 0.5, "extra": 0.25},
        {"gain": 0.9, "offset": 0.02, "noise": 0.02, "blur": 0.8, "extra": 0.1},
        {"gain": 1.0, "offset": 0.0, "noise": 0.04, "blur": 0.6, "extra": 0.4},  # strong bias
    ),
    "xray": (
        {"gain": 1.0, "offset": 0.0, "noise": 0.015, "blur": 0.7, "extra": 0.2},
        {"gain": 1.15, "offset": -0.02, "noise": 0.015, "blur": 0.9, "extra": 0.3},
        {"gain": 0.9, "offset": 0.02, "noise": 0.02, "blur": 0.6, "extra": 0.1},
        {"gain": 1.05, "offset": 0.05, "noise": 0.03, "blur": 1.0, "extra": -0.25},  # reversed
    ),
    "us": (
        {"gain": 1.0, "offset": 0.0, "noise": 0.0, "blur": 0.5, "extra": 0.3, "speckle": 0.6},
        {"gain": 1.1, "offset": 0.0, "noise": 0.0, "blur": 0.6, "extra": 0.2, "speckle": 0.45},
        {"gain": 0.9, "offset": 0.02, "noise": 0.0, "blur": 0.45, "extra": 0.35, "speckle": 0.75},
        {"gain": 1.0, "offset": 0.0, "noise": 0.0, "blur": 0.7, "extra": 0.5, "speckle": 0.85},
    ),
}


def draw_style(rng: np.random.Generator, modality: str, style: int) -> dict[str, float]:
    """The jittered parameters of one instance of ``style`` in ``modality``.

    Args:
        rng: Source of randomness.
        modality: One of ``ct``, ``mri``, ``xray``, ``us``.
        style: Sub-style id in ``range(NUM_STYLES)``.

    Returns:
        Plain floats (JSON-ready), rounded to 4 decimals so records stay short.
    """
    base = _STYLES[modality][style]
    params = dict(base)
    params["gain"] = base["gain"] * rng.uniform(0.95, 1.05)
    params["offset"] = base["offset"] + rng.uniform(-0.02, 0.02)
    params["noise"] = base["noise"] * rng.uniform(0.85, 1.15)
    params["blur"] = base["blur"] * rng.uniform(0.9, 1.1)
    return {k: round(float(v), 4) for k, v in params.items()}


def draw_style_id(rng: np.random.Generator, weights: tuple[float, ...] | None) -> int:
    """A sub-style id: uniform over ``PUBLIC_STYLES`` when ``weights`` is None."""
    if weights is None:
        return int(PUBLIC_STYLES[rng.integers(len(PUBLIC_STYLES))])
    return weighted_index(rng, weights)
