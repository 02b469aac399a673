"""Scene records: what a synthetic image shows, and how lesions are placed in it.

A :class:`Scene` is the ground truth every question, report and box is written from; it is
stored in ``Sample.meta["scene"]``. Lesions are kept sorted largest first, so ``lesions[0]`` is
the lesion that "largest lesion" questions and the detection box refer to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fedmllm.data.synthetic import weighted_index
from fedmllm.data.synthmed.anatomy import AVOID_TISSUES, Body, Structure, sample_anatomy

MODALITIES = ("ct", "mri", "xray", "us")
LESION_KINDS = ("cyst", "tumor", "calcification")
SIZE_CLASSES = ("small", "medium", "large")
MAX_LESIONS = 3

# Radii in pixels at a 32-pixel image; everything scales with image_size / 32. A 3-pixel
# radius is the smallest disc a 32x32 image still shows as a blob rather than noise.
_SIZE_BOUNDS = {"small": (3.0, 4.0), "medium": (4.0, 5.25), "large": (5.25, 7.0)}
_R_MIN = 3.0
_KIND_WEIGHTS = np.array([0.35, 0.4, 0.25])
# More lesions must share the same body, so they are drawn smaller.
_SIZE_WEIGHTS = {1: (0.3, 0.35, 0.35), 2: (0.5, 0.4, 0.1), 3: (0.75, 0.25, 0.0)}
_RING = 1.0  # tissue kept between a lesion and the rim, so a cyst never merges with the air
_GAP = 1.5  # minimum gap between two lesions
_EDGE = 1.0  # minimum distance to the image border
_MIDLINE = 1.0  # lesion centres stay off the midlines, so left/right and upper/lower are clear
_LARGEST_MARGIN = 0.75  # the largest lesion is this much larger than the next one
_CANDIDATES = 64
_HOST_GROW = 1.3
_ATTEMPTS = 40


@dataclass
class Lesion:
    """One lesion.

    Attributes:
        kind: One of ``LESION_KINDS``.
        size: Size class, one of ``SIZE_CLASSES``, derived from the radius.
        center: ``[x, y]`` in pixels.
        radius: Nominal radius in pixels (tumour outlines wobble around it by up to 16 %).
        box: Normalised ``[x1, y1, x2, y2]`` of the nominal disc.
    """

    kind: str
    size: str
    center: list[float]
    radius: float
    box: list[float]


@dataclass
class Scene:
    """The ground truth of one synthetic image."""

    scene_id: str
    modality: str
    organ: str
    image_size: int
    style: int
    style_params: dict[str, float]
    body: Body
    structures: list[Structure]
    lesions: list[Lesion] = field(default_factory=list)

    @property
    def largest(self) -> Lesion | None:
        """The largest lesion, or ``None`` for a scene without lesions."""
        return self.lesions[0] if self.lesions else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Rebuild a scene written by :meth:`to_dict`."""
        fields = dict(data)
        fields["body"] = Body(**data["body"])
        fields["structures"] = [Structure(**s) for s in data["structures"]]
        fields["lesions"] = [Lesion(**les) for les in data["lesions"]]
        return cls(**fields)


def size_class(radius: float, scale: float) -> str:
    """The size class of a radius given in pixels of an image ``scale`` times 32 pixels."""
    r = radius / scale
    if r < _SIZE_BOUNDS["small"][1]:
        return "small"
    return "medium" if r < _SIZE_BOUNDS["medium"][1] else "large"


def sample_scene(
    rng: np.random.Generator,
    *,
    scene_id: str,
    modality: str,
    organ: str,
    n_lesions: int,
    image_size: int,
    style: int,
    style_params: dict[str, float],
    required_kinds: tuple[str, ...] = (),
    forbidden_kinds: tuple[str, ...] = (),
) -> Scene:
    """Draw anatomy and ``n_lesions`` non-overlapping lesions.

    Args:
        rng: Source of randomness.
        scene_id: Unique id recorded in the scene.
        modality: One of ``MODALITIES``.
        organ: The organ the image shows (lesions sit in it).
        n_lesions: 0 to ``MAX_LESIONS``.
        image_size: Image side in pixels.
        style: Sub-style id of the modality (see ``styles``).
        style_params: The instance's style parameters.
        required_kinds: Kinds that must be among the lesions (a question may ask about them).
        forbidden_kinds: Kinds that must not appear.

    Returns:
        The scene with lesions sorted largest first.
    """
    if not 0 <= n_lesions <= MAX_LESIONS or len(required_kinds) > n_lesions:
        raise ValueError(f"cannot draw {n_lesions} lesions with required kinds {required_kinds}")
    body, structures = sample_anatomy(rng, modality, organ, image_size)
    scale = image_size / 32.0
    kinds, radii = _draw_kinds_and_radii(rng, n_lesions, required_kinds, forbidden_kinds, scale)
    centers = None
    for attempt in range(_ATTEMPTS):
        # Crowded scenes that do not fit are retried, then with shrinking lesions, and as a
        # last resort anywhere in the body rather than in the organ.
        shrink = 0.93 ** max(0, attempt - 5)
        tried = _enforce_largest(np.maximum(radii * shrink, _R_MIN * scale), scale)
        centers = _place(rng, tried, body, structures, image_size, in_host=attempt < 16)
        if centers is not None:
            radii = tried
            break
    if centers is None:
        raise RuntimeError(f"{scene_id}: could not place {n_lesions} lesions")
    lesions = [
        Lesion(kind, size_class(r, scale), [x, y], float(r), _box(x, y, r, image_size))
        for kind, r, (x, y) in zip(kinds, radii, centers, strict=True)
    ]
    return Scene(
        scene_id, modality, organ, image_size, style, style_params, body, structures, lesions
    )


def _draw_kinds_and_radii(
    rng: np.random.Generator,
    n: int,
    required: tuple[str, ...],
    forbidden: tuple[str, ...],
    scale: float,
) -> tuple[list[str], np.ndarray]:
    """Lesion kinds and radii (largest first); calcifications are always small."""
    allowed = np.array([k not in forbidden for k in LESION_KINDS])
    weights = _KIND_WEIGHTS * allowed
    kinds = list(required)
    for _ in range(n - len(required)):
        kinds.append(LESION_KINDS[weighted_index(rng, weights)])
    radii = []
    for kind in kinds:
        size = (
            "small" if kind == "calcification" else SIZE_CLASSES[rng.choice(3, p=_SIZE_WEIGHTS[n])]
        )
        lo, hi = _SIZE_BOUNDS[size]
        radii.append(rng.uniform(lo, hi) * scale)
    order = np.argsort(-np.asarray(radii), kind="stable")
    return [kinds[i] for i in order], np.asarray(radii, dtype=float)[order]


def _enforce_largest(radii: np.ndarray, scale: float) -> np.ndarray:
    """Make the first radius exceed the others by a visible margin (keeps "largest" defined)."""
    if len(radii) < 2:
        return radii
    out = radii.copy()
    margin = _LARGEST_MARGIN * scale
    out[0] = max(out[0], _R_MIN * scale + margin)
    out[1:] = np.clip(out[1:], _R_MIN * scale, out[0] - margin)
    return out


def _place(
    rng: np.random.Generator,
    radii: np.ndarray,
    body: Body,
    structures: list[Structure],
    size: int,
    in_host: bool,
) -> list[tuple[float, float]] | None:
    """Centres for discs of ``radii`` meeting every placement rule, or ``None``."""
    scale = size / 32.0
    hosts = [s for s in structures if s.host] if in_host else []
    avoid = [s for s in structures if s.tissue in AVOID_TISSUES]
    placed: list[tuple[float, float, float]] = []
    for r in radii:
        x, y = _candidates(rng, hosts, size)
        edge = r + _EDGE * scale
        ok = body.inside(x, y, r + (_RING * scale) + body.rim)
        ok &= (x >= edge) & (x <= size - edge) & (y >= edge) & (y <= size - edge)
        mid = _MIDLINE * scale
        ok &= (np.abs(x - size / 2) >= mid) & (np.abs(y - size / 2) >= mid)
        for s in avoid:
            ok &= s.radius2(x, y, grow=r + scale) > 1.0
        for px, py, pr in placed:
            ok &= np.hypot(x - px, y - py) >= r + pr + _GAP * scale
        hits = np.flatnonzero(ok)
        if hits.size == 0:
            return None
        placed.append((float(x[hits[0]]), float(y[hits[0]]), float(r)))
    return [(x, y) for x, y, _ in placed]


def _candidates(
    rng: np.random.Generator, hosts: list[Structure], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points inside the host ellipses, or in the whole image when there are none.

    The ellipses are grown by ``_HOST_GROW`` so that a lesion may bulge out of a small organ,
    as real ones do; otherwise two or three lesions rarely fit in a kidney.
    """
    if not hosts:
        pts = rng.uniform(0.0, size, size=(2, _CANDIDATES))
        return pts[0], pts[1]
    which = rng.integers(len(hosts), size=_CANDIDATES)
    rho = np.sqrt(rng.uniform(size=_CANDIDATES))
    phi = rng.uniform(0.0, 2 * np.pi, size=_CANDIDATES)
    cx = np.array([hosts[i].center[0] for i in which])
    cy = np.array([hosts[i].center[1] for i in which])
    ax = np.array([hosts[i].axes[0] for i in which]) * _HOST_GROW
    ay = np.array([hosts[i].axes[1] for i in which]) * _HOST_GROW
    ang = np.array([hosts[i].angle for i in which])
    u, v = rho * np.cos(phi) * ax, rho * np.sin(phi) * ay
    return cx + u * np.cos(ang) - v * np.sin(ang), cy + u * np.sin(ang) + v * np.cos(ang)


def _box(x: float, y: float, r: float, size: int) -> list[float]:
    """The normalised box of a disc, rounded to 4 decimals (JSON-stable)."""
    return [round(float(np.clip(v / size, 0.0, 1.0)), 4) for v in (x - r, y - r, x + r, y + r)]
