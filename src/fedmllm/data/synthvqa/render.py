"""Five visual styles of the same kind of scene, one per Fed-VQA source it imitates.

- ``art`` (AQUA, paintings): canvas weave, brush-stroke texture smeared along one direction,
  warm varnish.
- ``photo`` (GQA, everyday photos): sky and ground split at a horizon, shaded objects, noise.
- ``blurry`` (VizWiz, taken by blind users): the photo look, defocused, badly exposed, with a
  colour cast and more noise.
- ``cartoon`` (VQA Abstract Scenes): flat pastel background, flat fills, black outlines.
- ``object`` (COCO-QA, object-centric): one large main object on a cluttered background of
  muted blobs.

``strength`` in [0, 1] scales each style's degradations; the public split draws weaker
instances than the clients, so clients face an image shift from pretraining. Objects are drawn
at twice the resolution and averaged down, so small outlines stay clean at 32x32.
"""

from __future__ import annotations

import numpy as np

from fedmllm.data.synthmed.render import gaussian_blur, pixel_grid
from fedmllm.data.synthvqa.scene import COLORS, Scene
from fedmllm.data.synthvqa.shapes import outline, shape_masks

STYLES = ("art", "photo", "blurry", "cartoon", "object")
_SUPER = 2
_DARK = np.array([0.12, 0.12, 0.12])
_LIGHT = np.array([0.93, 0.93, 0.93])


def draw_params(rng: np.random.Generator, style: str, strength: float) -> dict[str, float]:
    """The random parameters of one image of ``style`` (recorded in ``Scene.params``)."""
    s = float(strength)
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; use one of {STYLES}")
    p: dict[str, float] = {"noise": 0.01 + 0.02 * s, "jitter": 0.05}
    if style == "art":
        p.update(warmth=0.15 + 0.25 * s, texture=0.05 + 0.1 * s, angle=rng.uniform(0, np.pi))
        p.update(smear=0.4 + 0.6 * s, canvas=rng.uniform(0.75, 0.88))
    elif style in ("photo", "blurry"):
        p.update(horizon=rng.uniform(0.4, 0.6), light=rng.uniform(0.1, 0.2))
        p.update(sky=rng.uniform(0.75, 0.9), ground=rng.uniform(0.4, 0.55))
        if style == "blurry":
            direction = 1.0 if rng.random() < 0.5 else -1.0
            p.update(blur=0.4 + 0.7 * s, exposure=1.0 + direction * rng.uniform(0.15, 0.4) * s)
            p.update(cast=rng.uniform(-0.08, 0.08) * s, noise=0.02 + 0.04 * s)
    elif style == "cartoon":
        p.update(bg_hue=float(rng.integers(3)), noise=0.0)
    else:
        p.update(blobs=float(rng.integers(6, 11)), clutter=0.25 + 0.2 * s)
    return {k: round(float(v), 4) for k, v in p.items()}


def _background(scene: Scene, rng: np.random.Generator, n: int) -> np.ndarray:
    p, x, y = scene.params, *pixel_grid(n)
    img = np.zeros((n, n, 3))
    if scene.style == "art":
        img[:] = p["canvas"] * np.array([1.0, 0.93, 0.8])
        img += 0.03 * np.sin(x[..., None] * 2.2) * np.sin(y[..., None] * 2.2)  # canvas weave
    elif scene.style in ("photo", "blurry"):
        sky = y < p["horizon"] * n
        img[sky] = p["sky"] * np.array([0.85, 0.92, 1.0])
        img[~sky] = p["ground"] * np.array([0.9, 0.82, 0.68])
        img *= (1.05 - 0.1 * y / n)[..., None]  # daylight from above
    elif scene.style == "cartoon":
        pastel = [(0.82, 0.92, 0.82), (0.85, 0.88, 0.95), (0.93, 0.9, 0.82)]
        img[:] = pastel[int(p["bg_hue"])]
    else:
        img[:] = 0.55
        for _ in range(int(p["blobs"])):
            cx, cy = rng.uniform(0, n, size=2)
            ax, ay = rng.uniform(0.08, 0.25, size=2) * n
            grey = rng.uniform(0.35, 0.7)
            tint = grey + rng.uniform(-p["clutter"], p["clutter"], size=3) * 0.4
            img[((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0] = tint
    return img


def _paint_objects(img: np.ndarray, scene: Scene, rng: np.random.Generator, n: int) -> None:
    x, y = pixel_grid(n)
    f = n / scene.image_size
    for t in scene.things:
        body, dark, light = shape_masks(
            t.category, t.center[0] * f, t.center[1] * f, t.size * f, x, y
        )
        colour = np.asarray(COLORS[t.color]) / 255.0
        colour = np.clip(colour + rng.uniform(-1, 1, size=3) * scene.params["jitter"], 0, 1)
        if scene.style in ("photo", "blurry", "object"):
            # Light from above: the top of an object is brighter than its bottom.
            shade = 1.0 + scene.params.get("light", 0.12) * (t.center[1] * f - y) / (t.size * f)
            img[body] = colour * shade[body][:, None]
        else:
            img[body] = colour
        img[dark] = _DARK
        img[light] = _LIGHT
        if scene.style == "cartoon":
            img[outline(body, width=int(round(f)))] = 0.0


def _art(img: np.ndarray, scene: Scene, rng: np.random.Generator, n: int) -> np.ndarray:
    p = scene.params
    # Brush strokes: noise smeared along the stroke direction, multiplied into the paint.
    strokes = gaussian_blur(rng.normal(size=(n, n)), p["smear"] * n / 32)
    x, y = pixel_grid(n)
    along = np.cos(p["angle"]) * x + np.sin(p["angle"]) * y
    strokes = strokes + 0.5 * np.sin(along * 1.3)
    img = img * (1.0 + p["texture"] * strokes[..., None])
    lum = img.mean(axis=2, keepdims=True)
    varnish = lum * np.array([1.1, 0.92, 0.62])
    return (1.0 - p["warmth"]) * img + p["warmth"] * varnish


def _blurry(img: np.ndarray, scene: Scene, n: int) -> np.ndarray:
    p = scene.params
    sigma = p["blur"] * n / 32
    img = np.stack([gaussian_blur(img[..., c], sigma) for c in range(3)], axis=-1)
    img = img * p["exposure"]
    return img + np.array([p["cast"], 0.0, -p["cast"]])


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw ``scene`` as an ``HxWx3`` uint8 RGB image."""
    size, n = scene.image_size, scene.image_size * _SUPER
    img = _background(scene, rng, n)
    _paint_objects(img, scene, rng, n)
    if scene.style == "art":
        img = _art(img, scene, rng, n)
    elif scene.style == "blurry":
        img = _blurry(img, scene, n)
    img = img.reshape(size, _SUPER, size, _SUPER, 3).mean(axis=(1, 3))
    if scene.params["noise"] > 0:
        img = img + rng.normal(0.0, scene.params["noise"], size=img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
