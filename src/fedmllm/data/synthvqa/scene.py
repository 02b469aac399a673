"""Scene records of ``fedvqa_synth``: which everyday objects an image shows, where, in which colour.

A :class:`Scene` is the ground truth every question and answer is read from; it is stored in
``Sample.meta["scene"]``. Geometry is in pixels of the final image (x to the right, y down).
Objects never overlap and keep clear of the image midlines, so "left or right" and "top or
bottom" always have one answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

CATEGORIES = ("ball", "box", "car", "house", "kite", "umbrella")
PLURALS = {
    "ball": "balls",
    "box": "boxes",
    "car": "cars",
    "house": "houses",
    "kite": "kites",
    "umbrella": "umbrellas",
}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (150, 50, 180),
}
MAX_OBJECTS = 3
# Object "radius" (half its width) in pixels at 32 px; the main object of an object-centric
# photo is larger. Below ~4 px the shapes stop being distinguishable at 32x32.
SIZE_RANGE = (5.0, 6.5)
MAIN_SIZE_RANGE = (7.5, 9.0)
_GAP = 1.0  # pixels between two objects' bounding discs
_EDGE = 0.5  # pixels between an object's disc and the border
_MIDLINE = 3.0  # object centres keep this far from both midlines (patch-size safe)
_ATTEMPTS = 200


@dataclass
class Thing:
    """One object.

    Attributes:
        category: One of ``CATEGORIES``.
        color: One of ``COLORS``.
        center: ``[x, y]`` in pixels.
        size: Half width in pixels (the object fits in a disc of radius ``size``).
    """

    category: str
    color: str
    center: list[float]
    size: float


@dataclass
class Scene:
    """The ground truth of one image."""

    scene_id: str
    style: str
    image_size: int
    strength: float
    things: list[Thing] = field(default_factory=list)
    params: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Rebuild a scene written by :meth:`to_dict`."""
        fields = dict(data)
        fields["things"] = [Thing(**t) for t in data["things"]]
        return cls(**fields)

    def of(self, category: str | None = None, color: str | None = None) -> list[Thing]:
        """The objects matching ``category`` and/or ``color``."""
        return [
            t
            for t in self.things
            if (category is None or t.category == category) and (color is None or t.color == color)
        ]

    @property
    def main(self) -> Thing:
        """The largest object (ties: the first drawn)."""
        return max(self.things, key=lambda t: t.size)


def side(thing: Thing, size: int) -> str:
    """``left``/``right`` half of the image the object's centre is in."""
    return "left" if thing.center[0] < size / 2 else "right"


def half(thing: Thing, size: int) -> str:
    """``top``/``bottom`` half of the image the object's centre is in."""
    return "top" if thing.center[1] < size / 2 else "bottom"


def place(
    rng: np.random.Generator, sizes: list[float], image_size: int
) -> list[list[float]] | None:
    """Centres for discs of ``sizes`` (largest placed first), or ``None`` when they do not fit."""
    placed: list[tuple[float, float, float]] = []
    order = np.argsort(-np.asarray(sizes), kind="stable")
    centres: list[list[float] | None] = [None] * len(sizes)
    for i in order:
        r = sizes[i]
        lo, hi = r + _EDGE, image_size - r - _EDGE
        if lo >= hi:
            return None
        pts = rng.uniform(lo, hi, size=(_ATTEMPTS, 2))
        ok = (np.abs(pts[:, 0] - image_size / 2) >= _MIDLINE) & (
            np.abs(pts[:, 1] - image_size / 2) >= _MIDLINE
        )
        for px, py, pr in placed:
            ok &= np.hypot(pts[:, 0] - px, pts[:, 1] - py) >= r + pr + _GAP
        hits = np.flatnonzero(ok)
        if hits.size == 0:
            return None
        x, y = (float(v) for v in pts[hits[0]])
        placed.append((x, y, r))
        centres[i] = [round(x, 3), round(y, 3)]
    return [c for c in centres if c is not None]


def build_scene(
    rng: np.random.Generator,
    *,
    scene_id: str,
    style: str,
    image_size: int,
    strength: float,
    objects: list[tuple[str, str]],
    main_first: bool = False,
) -> Scene:
    """Place ``objects`` (``(category, color)`` pairs) without overlap.

    Args:
        rng: Source of randomness.
        scene_id: Unique id recorded in the scene.
        style: Visual style name (see ``render``).
        image_size: Image side in pixels.
        strength: How strongly the style's degradations apply, in [0, 1].
        objects: What to draw, at most ``MAX_OBJECTS``.
        main_first: Make the first object the clearly largest one (object-centric photos).

    Returns:
        The scene; crowded scenes are retried with smaller objects.
    """
    if not 1 <= len(objects) <= MAX_OBJECTS:
        raise ValueError(f"{scene_id}: a scene holds 1..{MAX_OBJECTS} objects, got {len(objects)}")
    scale = image_size / 32.0
    sizes = [rng.uniform(*SIZE_RANGE) * scale for _ in objects]
    if main_first:
        sizes[0] = rng.uniform(*MAIN_SIZE_RANGE) * scale
    for attempt in range(40):
        shrink = 0.95**attempt
        tried = [max(s * shrink, 4.0 * scale) for s in sizes]
        if main_first:
            tried[0] = max(tried[0], max(tried[1:], default=0.0) + 2.0 * scale)
        centres = place(rng, tried, image_size)
        if centres is not None:
            things = [
                Thing(cat, col, c, round(float(s), 3))
                for (cat, col), c, s in zip(objects, centres, tried, strict=True)
            ]
            return Scene(scene_id, style, image_size, round(float(strength), 4), things)
    raise RuntimeError(f"{scene_id}: could not place {len(objects)} objects")
