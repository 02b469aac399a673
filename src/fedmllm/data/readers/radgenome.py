"""RadGenome-ChestCT as a detection source: 2-D boxes derived from 3-D region masks.

RadGenome-ChestCT distributes CT volumes, region-level report sentences and binary region
masks, but no boxes. Our derivation (the Fed-Med paper's is unpublished) makes one sample per
``(volume, region)`` row of the region report that has an anatomy: the region's mask picks an
axial slice (``max_area``: the slice where the region is largest; ``middle``: the middle of its
extent), the box is the min/max of the mask's non-zero pixels on that slice in the displayed
(radiological) orientation, normalised to [0, 1] and rounded to two decimals, and the image
is that slice of the CT volume under a configurable window.

Layout (``<root>``: the RadGenome-ChestCT folder)::

    dataset/{train,valid}_preprocessed/train_1/train_1a/train_1_a_1.nii.gz    CT volumes
    dataset/{train,valid}_region_mask/train_1_a_1/<region>.nii.gz             masks (ours)
    radgenome_files/{train,validation}_region_report.csv  Volumename,Anatomy,Sentence

The mask folder layout is our assumption (``mask_pattern`` changes it); see docs/data.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedmllm.data.imaging import ImageError, ImageRef, axial_view, load_nifti_volume
from fedmllm.data.readers.common import expect, read_csv, record_meta, require_columns
from fedmllm.data.readers.common import text as clean
from fedmllm.data.schema import Sample
from fedmllm.data.synthmed.phrases import format_box

_SPLITS = {"train": ("train", "train"), "val": ("valid", "validation")}
MASK_PATTERN = "dataset/{prefix}_region_mask/{stem}/{region}.nii.gz"
DETECTION_PROMPT = "give the bounding box of the {region} region in this ct slice."
SLICE_RULES = ("max_area", "middle")


def volume_path(root: Path, prefix: str, name: str) -> Path:
    """``train_1_a_1.nii.gz`` -> ``dataset/train_preprocessed/train_1/train_1a/<name>``."""
    parts = name.split("_")
    if len(parts) < 4:
        return root / "dataset" / f"{prefix}_preprocessed" / name
    return (
        root
        / "dataset"
        / f"{prefix}_preprocessed"
        / f"{parts[0]}_{parts[1]}"
        / (f"{parts[0]}_{parts[1]}{parts[2]}")
        / name
    )


def mask_box(mask: np.ndarray, rule: str = "max_area") -> tuple[int, tuple[float, ...]] | None:
    """The slice index and normalised ``(x1, y1, x2, y2)`` of a RAS+ mask, or ``None`` if empty.

    Args:
        mask: A 3-D mask, axes (right, anterior, superior) as :func:`load_nifti_volume` gives.
        rule: ``max_area`` or ``middle`` (see the module docstring).
    """
    if rule not in SLICE_RULES:
        raise ValueError(f"slice rule must be one of {SLICE_RULES}, got {rule!r}")
    area = (mask > 0).sum(axis=(0, 1))
    if not area.any():
        return None
    if rule == "max_area":
        z = int(np.argmax(area))
    else:
        zs = np.flatnonzero(area)
        z = int(zs[len(zs) // 2])
    plane = axial_view(mask, z) > 0
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    h, w = plane.shape
    box = (cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h)
    return z, tuple(round(float(v), 2) for v in box)


def read_radgenome(
    root: str | Path,
    split: str = "train",
    slice_rule: str = "max_area",
    window: tuple[float, float] | None = (-600.0, 1500.0),
    regions: list[str] | None = None,
    mask_pattern: str = MASK_PATTERN,
) -> list[Sample]:
    """Detection samples from RadGenome-ChestCT region masks.

    Args:
        root: The RadGenome-ChestCT folder.
        split: ``train`` or ``val``.
        slice_rule: ``max_area`` or ``middle``.
        window: CT window ``(centre, width)`` in HU for the image (default a lung window).
        regions: Keep only these anatomies (``None``: all).
        mask_pattern: Mask path under ``root`` with ``{prefix}``, ``{stem}``, ``{region}``.

    Returns:
        One sample per kept row; a row whose mask is missing or empty gets ``box=None`` (and is
        reported, or skipped, by validation).
    """
    root = Path(root)
    if split not in _SPLITS:
        raise ValueError(f"radgenome: unknown split {split!r}; use {sorted(_SPLITS)}")
    prefix, csv_name = _SPLITS[split]
    path = root / "radgenome_files" / f"{csv_name}_region_report.csv"
    rows = read_csv(path, "radgenome", "region report table")
    require_columns(rows, ("Volumename", "Anatomy", "Sentence"), path)
    expect(root / "dataset" / f"{prefix}_preprocessed", "radgenome", "volume folder")
    samples = []
    for i, row in enumerate(rows):
        region, name = clean(row["Anatomy"]).lower(), clean(row["Volumename"])
        if not region or (regions is not None and region not in regions):
            continue
        stem = name.removesuffix(".gz").removesuffix(".nii")
        mask_file = root / mask_pattern.format(
            prefix=prefix, stem=stem, region=region.replace(" ", "_")
        )
        found = _box_from(mask_file, slice_rule)
        z, box = found if found is not None else ("middle", None)
        rid, sentence = f"{stem}/{region}", clean(row["Sentence"])
        meta = record_meta("radgenome", rid, split, mask_file, sentence=sentence, row=i)
        if box is None:
            meta["problem"] = f"region mask {mask_file} is missing, unreadable or empty"
        image = ImageRef(str(volume_path(root, prefix, name)), z, window)
        samples.append(
            Sample(
                image,
                "ct",
                DETECTION_PROMPT.format(region=region),
                format_box(box) if box is not None else "",
                "detection",
                box=box,  # type: ignore[arg-type]
                meta=meta,
            )
        )
    return samples


def _box_from(mask_file: Path, rule: str) -> tuple[int, tuple[float, ...]] | None:
    if not mask_file.exists():
        return None
    try:
        return mask_box(load_nifti_volume(mask_file), rule)
    except ImageError:
        return None
