"""Anatomy of a synthetic scene: a body outline and the organ ellipses drawn inside it.

Geometry is in pixels of the final image (x to the right, y downwards, pixel ``i`` covering
``[i, i + 1)``), so a record can be checked against the array without any conversion. The
layouts are written in fractions of the image side and scaled, which keeps every image size
anatomically identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TISSUES = ("soft", "rim", "bone", "organ", "organ2", "air", "fluid")
# A lesion touching bone would be hidden by it (bone is as bright as a tumour), so the scene
# sampler keeps lesions off bone. Fluid (the ventricles) may be overwritten: avoiding it too
# would leave no room for a large lesion in the brain.
AVOID_TISSUES = ("bone",)

ORGANS_BY_MODALITY: dict[str, tuple[str, ...]] = {
    "ct": ("liver", "kidney", "lung"),
    "mri": ("brain", "liver", "kidney"),
    "xray": ("lung", "kidney"),
    "us": ("liver", "kidney"),
}
_FAMILY = {"ct": "axial", "mri": "axial", "xray": "projection", "us": "fan"}


@dataclass
class Structure:
    """One organ-like ellipse.

    Attributes:
        tissue: One of ``TISSUES``; the renderer maps it to a modality-specific intensity.
        center: ``[x, y]`` in pixels.
        axes: Semi-axes ``[a, b]`` in pixels (before rotation).
        angle: Rotation in radians.
        host: Whether lesions of the scene's organ are placed inside this ellipse.
    """

    tissue: str
    center: list[float]
    axes: list[float]
    angle: float = 0.0
    host: bool = False

    def radius2(self, x: np.ndarray, y: np.ndarray, grow: float = 0.0) -> np.ndarray:
        """Squared elliptic radius of points: ``<= 1`` inside the ellipse grown by ``grow`` px."""
        dx, dy = x - self.center[0], y - self.center[1]
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = (dx * c + dy * s) / (self.axes[0] + grow)
        v = (-dx * s + dy * c) / (self.axes[1] + grow)
        return u * u + v * v


@dataclass
class Body:
    """The body outline: an ellipse (CT, MRI, X-ray) or an ultrasound fan.

    Attributes:
        shape: ``"ellipse"`` or ``"fan"``.
        center: Ellipse centre, or the fan's apex, ``[x, y]`` in pixels.
        axes: Ellipse semi-axes, or the fan's ``[inner, outer]`` radius, in pixels.
        half_angle: Half opening of the fan in radians (0 for an ellipse).
        rim: Thickness in pixels of the bright (or fatty) rim drawn inside the outline.
    """

    shape: str
    center: list[float]
    axes: list[float]
    half_angle: float = 0.0
    rim: float = 0.0

    def inside(self, x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether points lie inside the body at least ``margin`` pixels from its outline."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        dx, dy = x - self.center[0], y - self.center[1]
        if self.shape == "ellipse":
            # The ellipse with semi-axes shrunk by ``margin`` lies inside the inner parallel
            # curve at distance ``margin``, so this test is conservative, never optimistic.
            ax, ay = self.axes[0] - margin, self.axes[1] - margin
            if ax <= 0 or ay <= 0:
                return np.zeros(x.shape, dtype=bool)
            return (dx / ax) ** 2 + (dy / ay) ** 2 <= 1.0
        rho = np.hypot(dx, dy)
        theta = np.abs(np.arctan2(dx, dy))  # 0 is straight down from the apex
        side = rho * np.sin(np.clip(self.half_angle - theta, -1.0, 1.0))
        return (
            (theta <= self.half_angle)
            & (rho >= self.axes[0] + margin)
            & (rho <= self.axes[1] - margin)
            & (side >= margin)
        )


# Layout rows: tissue, cx, cy, ax, ay, angle, host, jitter (0 = follow the body exactly).
_Row = tuple[str, float, float, float, float, float, bool, float]
_LAYOUTS: dict[tuple[str, str], tuple[tuple[float, float, float, float, float], list[_Row]]] = {
    # body: cx, cy, ax, ay, rim
    ("axial", "liver"): (
        (0.5, 0.52, 0.47, 0.42, 0.045),
        [
            ("organ", 0.36, 0.48, 0.20, 0.17, 0.3, True, 1.0),
            ("organ2", 0.72, 0.44, 0.08, 0.11, 0.0, False, 1.0),
            ("bone", 0.5, 0.76, 0.07, 0.055, 0.0, False, 0.5),
        ],
    ),
    ("axial", "kidney"): (
        (0.5, 0.52, 0.47, 0.42, 0.045),
        [
            ("organ2", 0.5, 0.36, 0.15, 0.08, 0.0, False, 1.0),
            ("organ", 0.31, 0.58, 0.08, 0.12, 0.3, True, 1.0),
            ("organ", 0.69, 0.58, 0.08, 0.12, -0.3, True, 1.0),
            ("bone", 0.5, 0.76, 0.07, 0.055, 0.0, False, 0.5),
        ],
    ),
    ("axial", "lung"): (
        (0.5, 0.52, 0.47, 0.4, 0.045),
        [
            ("air", 0.3, 0.5, 0.15, 0.22, 0.1, True, 1.0),
            ("air", 0.7, 0.5, 0.15, 0.22, -0.1, True, 1.0),
            ("organ2", 0.54, 0.44, 0.11, 0.1, 0.0, False, 1.0),
            ("bone", 0.5, 0.78, 0.065, 0.05, 0.0, False, 0.5),
        ],
    ),
    ("axial", "brain"): (
        (0.5, 0.5, 0.42, 0.46, 0.05),
        [
            ("organ", 0.5, 0.5, 0.37, 0.41, 0.0, True, 0.0),
            ("fluid", 0.45, 0.47, 0.035, 0.1, 0.25, False, 0.5),
            ("fluid", 0.55, 0.47, 0.035, 0.1, -0.25, False, 0.5),
        ],
    ),
    ("projection", "lung"): (
        (0.5, 0.56, 0.54, 0.62, 0.0),
        [
            ("bone", 0.5, 0.5, 0.035, 0.6, 0.0, False, 0.0),
            ("air", 0.29, 0.44, 0.17, 0.3, 0.05, True, 1.0),
            ("air", 0.71, 0.44, 0.17, 0.3, -0.05, True, 1.0),
            ("organ2", 0.55, 0.64, 0.16, 0.12, 0.0, False, 1.0),
        ],
    ),
    ("projection", "kidney"): (
        (0.5, 0.5, 0.5, 0.62, 0.0),
        [
            ("bone", 0.5, 0.5, 0.04, 0.6, 0.0, False, 0.0),
            ("organ", 0.33, 0.42, 0.09, 0.14, 0.25, True, 1.0),
            ("organ", 0.67, 0.42, 0.09, 0.14, -0.25, True, 1.0),
            ("bone", 0.22, 0.93, 0.16, 0.08, 0.2, False, 0.5),
            ("bone", 0.78, 0.93, 0.16, 0.08, -0.2, False, 0.5),
        ],
    ),
    # fan body: apex x, apex y, inner radius, outer radius, half angle
    ("fan", "liver"): (
        (0.5, 0.02, 0.08, 0.95, 0.75),
        [
            ("organ", 0.5, 0.55, 0.34, 0.26, 0.2, True, 1.0),
        ],
    ),
    ("fan", "kidney"): (
        (0.5, 0.02, 0.08, 0.95, 0.75),
        [
            ("organ", 0.5, 0.58, 0.30, 0.17, 0.15, True, 1.0),
            ("organ2", 0.5, 0.58, 0.14, 0.06, 0.15, False, 0.0),
        ],
    ),
}


def organs_for(modality: str) -> tuple[str, ...]:
    """The organs a scene of ``modality`` can show."""
    return ORGANS_BY_MODALITY[modality]


def sample_anatomy(
    rng: np.random.Generator, modality: str, organ: str, size: int
) -> tuple[Body, list[Structure]]:
    """Draw a jittered body outline and organ layout for ``organ`` seen by ``modality``.

    Args:
        rng: Source of randomness.
        modality: One of ``ORGANS_BY_MODALITY``.
        organ: An organ valid for ``modality``.
        size: Image side in pixels.

    Returns:
        The body and its structures, in drawing order.
    """
    if organ not in ORGANS_BY_MODALITY[modality]:
        raise ValueError(f"organ {organ!r} is not drawn in {modality!r}")
    family = _FAMILY[modality]
    body_row, rows = _LAYOUTS[(family, organ)]
    shift = rng.uniform(-0.03, 0.03, size=2)
    scale = rng.uniform(0.93, 1.05, size=2)
    if family == "fan":
        ax, ay, r_in, r_out, half = body_row
        body = Body(
            "fan",
            [float((ax + shift[0]) * size), float(ay * size)],
            [float(r_in * size), float(r_out * size * rng.uniform(0.97, 1.0))],
            half_angle=float(half + rng.uniform(-0.05, 0.05)),
        )
        scale = np.ones(2)  # the fan's extent is fixed by the probe, not by the patient
    else:
        cx, cy, bx, by, rim = body_row
        body = Body(
            "ellipse",
            [float((cx + shift[0]) * size), float((cy + shift[1]) * size)],
            [float(bx * scale[0] * size), float(by * scale[1] * size)],
            rim=float(rim * size),
        )
    bcx, bcy = body_row[0], body_row[1]
    structures = []
    for tissue, cx, cy, ax, ay, angle, host, jitter in rows:
        # Organs move and stretch with the body, then wiggle on their own.
        jc = rng.uniform(-0.02, 0.02, size=2) * jitter
        ja = 1.0 + rng.uniform(-0.08, 0.08, size=2) * jitter
        x = bcx + shift[0] + (cx - bcx) * scale[0] + jc[0]
        y = bcy + (shift[1] if family != "fan" else 0.0) + (cy - bcy) * scale[1] + jc[1]
        structures.append(
            Structure(
                tissue,
                [float(x * size), float(y * size)],
                [float(ax * scale[0] * ja[0] * size), float(ay * scale[1] * ja[1] * size)],
                float(angle + rng.uniform(-0.12, 0.12) * jitter),
                host,
            )
        )
    return body, structures
