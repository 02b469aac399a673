"""Silhouettes of the everyday objects, as masks over a pixel grid.

Each category has a distinct outline at 32x32 (disc, square, wide body on wheels, square under
a roof, diamond, half-disc on a handle), a *body* in the object's colour and dark and light
*details*. Everything fits in the disc of radius ``r`` around the
centre, which is what the scene placer keeps apart.
"""

from __future__ import annotations

import numpy as np


def _disc(dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    return dx * dx + dy * dy <= radius * radius


def _rect(dx: np.ndarray, dy: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return (dx >= x0) & (dx <= x1) & (dy >= y0) & (dy <= y1)


def shape_masks(
    category: str, cx: float, cy: float, r: float, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body, dark-detail and light-detail masks of one object.

    Besides its outline each category has a signature of dark and light parts, as real objects
    do (a car's black tyres and pale windows, a house's dark roof and door, a kite's white
    spars and dark tail, a ball's highlight, a box's dark edges, an umbrella's handle); these
    survive at 32x32 better than the silhouette alone.

    Args:
        category: One of ``scene.CATEGORIES``.
        cx: Centre x in the grid's pixel units.
        cy: Centre y.
        r: Half width in the grid's pixel units.
        x: Pixel-centre x coordinates.
        y: Pixel-centre y coordinates.

    Returns:
        ``(body, dark, light)`` boolean masks; details are drawn over the body.
    """
    dx, dy = x - cx, y - cy
    none = np.zeros(x.shape, dtype=bool)
    if category == "ball":
        return _disc(dx, dy, r), none, _disc(dx + 0.38 * r, dy + 0.38 * r, 0.24 * r)
    if category == "box":
        body = _rect(dx, dy, -0.75 * r, 0.75 * r, -0.75 * r, 0.75 * r)
        inner = _rect(dx, dy, -0.55 * r, 0.55 * r, -0.55 * r, 0.55 * r)
        return body, body & ~inner, none
    if category == "car":
        body = _rect(dx, dy, -r, r, -0.05 * r, 0.45 * r)
        body |= _rect(dx, dy, -0.55 * r, 0.45 * r, -0.5 * r, 0.0)
        wheels = _disc(dx + 0.55 * r, dy - 0.5 * r, 0.3 * r) | _disc(
            dx - 0.55 * r, dy - 0.5 * r, 0.3 * r
        )
        window = _rect(dx, dy, -0.4 * r, 0.3 * r, -0.38 * r, -0.1 * r)
        return body | wheels, wheels, window
    if category == "house":
        walls = _rect(dx, dy, -0.65 * r, 0.65 * r, 0.0, 0.8 * r)
        roof = (dy < 0.0) & (dy >= -0.9 * r) & (np.abs(dx) <= 0.95 * r * (1.0 + dy / (0.9 * r)))
        door = _rect(dx, dy, -0.16 * r, 0.16 * r, 0.35 * r, 0.8 * r)
        return walls | roof, roof | door, none
    if category == "kite":
        body = np.abs(dx) / (0.62 * r) + np.abs(dy) / (0.8 * r) <= 1.0
        spars = body & ((np.abs(dx) <= 0.08 * r) | (np.abs(dy + 0.15 * r) <= 0.08 * r))
        tail = (dy > 0.75 * r) & (dy <= r) & (np.abs(dx - 0.12 * r * np.sin(dy * 6 / r)) <= 0.1 * r)
        return body | tail, tail, spars
    if category == "umbrella":
        canopy = _disc(dx, dy + 0.1 * r, r) & (dy <= -0.1 * r)
        handle = _rect(dx, dy, -0.1 * r, 0.1 * r, -0.1 * r, 0.8 * r)
        hook = _rect(dx, dy, -0.35 * r, 0.1 * r, 0.7 * r, 0.9 * r)
        return canopy | handle | hook, handle | hook, none
    raise ValueError(f"unknown object category {category!r}")


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels just outside ``mask`` (its dilation minus itself), for cartoon outlines."""
    grown = mask.copy()
    for _ in range(width):
        g = grown.copy()
        g[1:, :] |= grown[:-1, :]
        g[:-1, :] |= grown[1:, :]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    return grown & ~mask
