"""Modality renderers: a scene record becomes an ``HxWx3`` uint8 image.

All four renderers share one tissue map (body, rim, organ ellipses) and differ where real
modalities differ: intensity tables, how lesions combine with tissue (replacement for the
tomographic and ultrasound images, additive opacities for the projection X-ray), the noise
model (Gaussian, Rician, speckle), smoothing, and a global artefact (bias field, exposure
gradient, depth attenuation). Every body tissue sits between 0.2 and 0.65, cysts well below,
tumours and calcifications well above, so lesions are visible whatever the sub-style.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fedmllm.data.synthmed.scene import Lesion, Scene

# Base intensities in [0, 1] before the sub-style window. "organ" depends on the organ shown.
_TISSUE = {
    "ct": {
        "bg": 0.0,
        "soft": 0.42,
        "rim": 0.88,
        "bone": 0.88,
        "organ2": 0.52,
        "air": 0.28,
        "fluid": 0.33,
        "organ": {"liver": 0.58, "kidney": 0.62, "lung": 0.58},
    },
    "mri": {
        "bg": 0.0,
        "soft": 0.5,
        "rim": 0.64,
        "bone": 0.16,
        "organ2": 0.56,
        "air": 0.25,
        "fluid": 0.2,
        "organ": {"brain": 0.45, "liver": 0.38, "kidney": 0.34},
    },
    "xray": {
        "bg": 0.02,
        "soft": 0.5,
        "rim": 0.5,
        "bone": 0.72,
        "organ2": 0.64,
        "air": 0.3,
        "fluid": 0.5,
        "organ": {"lung": 0.3, "kidney": 0.58},
    },
    "us": {
        "bg": 0.0,
        "soft": 0.34,
        "rim": 0.34,
        "bone": 0.7,
        "organ2": 0.66,
        "air": 0.2,
        "fluid": 0.1,
        "organ": {"liver": 0.54, "kidney": 0.44},
    },
}
# Lesion intensity replacing tissue (ct, mri, us) ...
_LESION = {
    "ct": {"cyst": 0.06, "tumor": 0.82, "calcification": 1.0},
    "mri": {"cyst": 0.05, "tumor": 0.84, "calcification": 1.0},
    "us": {"cyst": 0.04, "tumor": 0.88, "calcification": 1.0},
}
# ... or added to it in a projection image, where a lesion attenuates on top of the tissue.
_XRAY_DELTA = {"cyst": -0.22, "tumor": 0.3, "calcification": 0.55}


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(x, y)`` of a square image; read-only (the arrays are shared)."""
    y, x = np.mgrid[0:size, 0:size].astype(float) + 0.5
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders (numpy only; tiny kernels)."""
    if sigma < 0.2:
        return img
    radius = max(1, int(np.ceil(2.5 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(img, pad, mode="reflect")
        n = img.shape[axis]
        img = sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(taps))
    return img


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw ``scene`` as an ``HxWx3`` uint8 image (grey replicated to three channels)."""
    size = scene.image_size
    x, y = pixel_grid(size)
    table = _TISSUE[scene.modality]
    img = np.full((size, size), table["bg"])
    body = scene.body.inside(x, y)
    img[body] = table["soft"]
    if scene.body.rim > 0:
        img[body & ~scene.body.inside(x, y, scene.body.rim)] = table["rim"]
    air = np.zeros_like(body)
    for s in scene.structures:
        inside = s.radius2(x, y) <= 1.0
        img[inside] = table["organ"][scene.organ] if s.tissue == "organ" else table[s.tissue]
        air = air | inside if s.tissue == "air" else air & ~inside
    masks = [_lesion_mask(les, x, y, rng) for les in scene.lesions]
    draw = {"ct": _ct, "mri": _mri, "xray": _xray, "us": _us}[scene.modality]
    out = draw(_Canvas(img, body, air, masks, scene, rng))
    grey = (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _lesion_mask(les: Lesion, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixels of a lesion; tumours get an irregular (two-harmonic) outline."""
    dx, dy = x - les.center[0], y - les.center[1]
    dist = np.hypot(dx, dy)
    if les.kind != "tumor":
        return dist <= les.radius
    a = rng.uniform(0.04, 0.08, size=2)
    ph = rng.uniform(0.0, 2 * np.pi, size=2)
    theta = np.arctan2(dy, dx)
    outline = les.radius * (1 + a[0] * np.cos(2 * theta + ph[0]) + a[1] * np.cos(3 * theta + ph[1]))
    return dist <= outline


@dataclass
class _Canvas:
    """What a modality's renderer starts from: the tissue map and the scene's masks.

    Attributes:
        img: Tissue intensities (``HxW`` float), filled in place by :func:`_fill_lesions`.
        body: Pixels inside the body.
        air: Pixels of air-filled structures (the lungs).
        masks: One pixel mask per lesion of ``scene``, in order.
        scene: The scene record (its ``style_params`` set the sub-style).
        rng: The sample's random stream.
    """

    img: np.ndarray
    body: np.ndarray
    air: np.ndarray
    masks: list[np.ndarray]
    scene: Scene
    rng: np.random.Generator


def _fill_lesions(c: _Canvas) -> None:
    """Replace tissue by lesion intensity; tumours get a faint internal texture."""
    values = _LESION[c.scene.modality]
    for les, m in zip(c.scene.lesions, c.masks, strict=True):
        value = values[les.kind] + c.rng.uniform(-0.02, 0.02)
        if les.kind == "tumor":
            k = c.rng.normal(size=2) / les.radius
            c.img[m] = value + 0.04 * np.cos(k[0] * pixel_grid(c.scene.image_size)[0][m] * 3 + k[1])
        else:
            c.img[m] = value


def _window(img: np.ndarray, p: dict[str, float]) -> np.ndarray:
    """The sub-style's display window around mid-grey."""
    return (img - 0.5) * p["gain"] + 0.5 + p["offset"]


def _dark_background(
    img: np.ndarray, body: np.ndarray, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """Air outside the body stays black whatever the window; only a faint noise floor."""
    img[~body] = np.abs(rng.normal(0.0, max(sigma, 0.005), size=int((~body).sum())))
    return img


def _ct(c: _Canvas) -> np.ndarray:
    """CT: replaced lesions, Gaussian noise, optional smooth kernel, black air."""
    p, scale = c.scene.style_params, c.scene.image_size / 32.0
    _fill_lesions(c)
    img = c.img + c.rng.normal(0.0, p["noise"], size=c.img.shape)
    img = _window(gaussian_blur(img, p["blur"] * scale), p)
    return _dark_background(img, c.body, p["noise"] * 0.5, c.rng)


def _mri(c: _Canvas) -> np.ndarray:
    """MRI: smooth tissue, a bias field and Rician noise."""
    p, size, rng = c.scene.style_params, c.scene.image_size, c.rng
    x, y = pixel_grid(size)
    _fill_lesions(c)
    img = gaussian_blur(c.img, p["blur"] * size / 32.0)
    phi = rng.uniform(0.0, 2 * np.pi)
    # A linear receive-coil bias field: one side of the image brighter than the other.
    ramp = np.cos(phi) * (x / size - 0.5) + np.sin(phi) * (y / size - 0.5)
    img = img * (1.0 + 2 * p["extra"] * ramp)
    # Rician noise: the magnitude of a complex signal with Gaussian noise on both channels.
    n = rng.normal(0.0, p["noise"], size=(2, *img.shape))
    img = np.hypot(img + n[0], n[1])
    img = _window(img, p)
    return _dark_background(img, c.body, p["noise"], rng)


def _xray(c: _Canvas) -> np.ndarray:
    """X-ray: rib bands, additive opacities, projection blur and an exposure gradient."""
    p, size, rng = c.scene.style_params, c.scene.image_size, c.rng
    _, y = pixel_grid(size)
    # Ribs: faint horizontal bands across the lung fields.
    period, phase = rng.uniform(0.1, 0.14) * size, rng.uniform(0.0, 2 * np.pi)
    img = c.img + c.air * 0.05 * np.cos(2 * np.pi * y / period + phase)
    for les, m in zip(c.scene.lesions, c.masks, strict=True):
        img[m] += _XRAY_DELTA[les.kind] + rng.uniform(-0.02, 0.02)
    img = gaussian_blur(img, p["blur"] * size / 32.0)
    img = img * (1.0 + p["extra"] * (y / size - 0.5))  # exposure falls off towards one edge
    img = img + rng.normal(0.0, p["noise"], size=img.shape)
    img = _window(img, p)
    return _dark_background(img, c.body, p["noise"], rng)


def _us(c: _Canvas) -> np.ndarray:
    """Ultrasound: Rayleigh speckle, depth attenuation, bright calcifications, the fan."""
    p, size, rng, body = c.scene.style_params, c.scene.image_size, c.rng, c.scene.body
    x, y = pixel_grid(size)
    _fill_lesions(c)
    # Fully developed speckle is Rayleigh-distributed; normalise it to mean 1.
    speckle = rng.rayleigh(1.0, size=c.img.shape) / np.sqrt(np.pi / 2)
    img = c.img * (1.0 + p["speckle"] * (speckle - 1.0))
    img = gaussian_blur(img, p["blur"] * size / 32.0)
    depth = np.hypot(x - body.center[0], y - body.center[1]) / body.axes[1]
    img = img * (1.0 - p["extra"] * np.clip(depth, 0.0, 1.0) ** 2)
    for les, m in zip(c.scene.lesions, c.masks, strict=True):
        if les.kind == "calcification":
            img[m] = 1.0  # a strong reflector saturates, with no speckle
    img = _window(img, p)
    img[~c.body] = 0.0
    return img
