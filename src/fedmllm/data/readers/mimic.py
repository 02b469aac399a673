"""MIMIC-CXR-JPG reports, and the R2Gen-style ``annotation.json`` pre-processed form.

Raw layout (``<root>`` = the ``mimic-cxr-jpg`` folder, reports from MIMIC-CXR beside it)::

    files/p10/p10000032/s50414267/<dicom_id>.jpg
    files/p10/p10000032/s50414267.txt
    mimic-cxr-2.0.0-split.csv.gz      dicom_id,study_id,subject_id,split
    mimic-cxr-2.0.0-metadata.csv.gz   dicom_id,...,ViewPosition,...

One sample per study: a frontal image (PA preferred, then AP) and the report's FINDINGS
section (falling back to IMPRESSION; ``section`` chooses). Studies with neither section or no
frontal image are left out (counted in the log), as report-generation work usually does.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fedmllm.data.readers.common import (
    as_list,
    expect,
    read_csv,
    read_json,
    record_meta,
    require_columns,
)
from fedmllm.data.readers.common import text as clean
from fedmllm.data.schema import Sample

log = logging.getLogger(__name__)

SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
REPORT_PROMPT = "write the findings section of the radiology report for this chest x-ray."
SECTIONS = ("findings", "impression", "findings+impression")
_SPLITS = {"train": "train", "val": "validate", "test": "test"}
_FRONTAL = ("PA", "AP")
# An upper-case header such as "FINDINGS:" or "IMPRESSION:" at the start of a line.
_HEADER = re.compile(r"^\s*([A-Z][A-Z /&()-]+):", re.MULTILINE)
_RULE = re.compile(r"\n\s*_{5,}\s*\n")  # the line of underscores above an addendum


def report_sections(report: str) -> dict[str, str]:
    """Sections of a MIMIC-CXR report, keyed by lower-case header, whitespace collapsed.

    An addendum above a line of underscores is dropped; text before the first header goes
    under ``""``.
    """
    body = (
        re.split(r"\n\s*_{5,}\s*\n", report)[-1]
        if re.search(r"\n\s*_{5,}\s*\n", report)
        else report
    )
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer(body))
    sections[""] = clean(body[: matches[0].start()] if matches else body)
    for m, nxt in zip(matches, [*matches[1:], None], strict=True):
        end = nxt.start() if nxt is not None else len(body)
        sections[m.group(1).strip().lower()] = clean(body[m.end() : end])
    return sections


def report_target(report: str, section: str = "findings") -> str:
    """The target text of a report: ``findings`` (falls back to impression), ``impression``,
    or ``findings+impression``; empty when the report has none of them."""
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, got {section!r}")
    parts = report_sections(report)
    findings, impression = parts.get("findings", ""), parts.get("impression", "")
    if section == "impression":
        return impression
    if section == "findings+impression":
        return " ".join(p for p in (findings, impression) if p)
    return findings or impression


def _study_dir(root: Path, subject: str, study: str) -> Path:
    return root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"


def read_mimic_cxr(
    root: str | Path,
    split: str = "train",
    section: str = "findings",
    image_ext: str = ".jpg",
    views: list[str] | tuple[str, ...] | None = None,
    exclude_views: list[str] | tuple[str, ...] = (),
) -> list[Sample]:
    """MIMIC-CXR-JPG studies of one split as report-generation samples.

    Args:
        root: The folder holding ``files/`` and the two CSV tables.
        split: ``train``, ``val`` or ``test`` (the CSV's ``validate`` is ``val``).
        section: Target section (see :func:`report_target`).
        image_ext: ``.jpg`` (MIMIC-CXR-JPG) or ``.dcm`` (MIMIC-CXR DICOM).
        views: ``ViewPosition`` values a study's image may have, in order of preference
            (None: the frontal views, PA then AP). ``[AP]`` keeps the studies with an AP image:
            a site variable for the multi-site report benchmark (``benchmark=mrg_mimic``).
        exclude_views: Leave out studies with an image of any of these views (``[PA]`` with
            ``views=[AP]``: the AP-only, portable studies), so view sites are disjoint.
    """
    root = Path(root)
    if split not in _SPLITS:
        raise ValueError(f"mimic_cxr: unknown split {split!r}; use {sorted(_SPLITS)}")
    split_rows = read_csv(root / SPLIT_CSV, "mimic_cxr", "split table")
    require_columns(split_rows, ("dicom_id", "study_id", "subject_id", "split"), root / SPLIT_CSV)
    meta_rows = read_csv(root / METADATA_CSV, "mimic_cxr", "metadata table")
    require_columns(meta_rows, ("dicom_id", "ViewPosition"), root / METADATA_CSV)
    expect(root / "files", "mimic_cxr", "files folder")
    view = {r["dicom_id"]: r["ViewPosition"].upper() for r in meta_rows}
    wanted = tuple(v.upper() for v in views) if views else _FRONTAL
    unwanted = {v.upper() for v in exclude_views}
    studies: dict[tuple[str, str], list[str]] = {}
    for r in split_rows:
        if r["split"] == _SPLITS[split]:
            studies.setdefault((r["subject_id"], r["study_id"]), []).append(r["dicom_id"])
    samples, no_view, no_text = [], 0, 0
    for (subject, study), dicoms in sorted(studies.items()):
        frontal = sorted(
            (d for d in dicoms if view.get(d) in wanted), key=lambda d: wanted.index(view[d])
        )
        if not frontal or any(view.get(d) in unwanted for d in dicoms):
            no_view += 1
            continue
        folder = _study_dir(root, subject, study)
        report_path = folder.parent / f"s{study}.txt"
        report = report_path.read_text(encoding="utf-8") if report_path.exists() else ""
        target = report_target(report, section)
        if not target:
            no_text += 1
            continue
        meta = record_meta(
            "mimic_cxr", f"s{study}", split, report_path, view=view[frontal[0]], subject_id=subject
        )
        image = str(folder / f"{frontal[0]}{image_ext}")
        samples.append(Sample(image, "xray", REPORT_PROMPT, target, "report", meta=meta))
    if no_view or no_text:
        log.info(
            "mimic_cxr/%s: left out %d studies without a wanted view (or with an excluded "
            "one) and %d without a %s section (or report file)",
            split,
            no_view,
            no_text,
            section,
        )
    return samples


_R2GEN_SPLITS = {"train": "train", "val": "val", "test": "test"}


def read_r2gen(
    root: str | Path, split: str = "train", images: str | Path | None = None
) -> list[Sample]:
    """R2Gen-style ``<root>/annotation.json`` (``{"train": [...], "val": [...], "test": [...]}``,
    items ``{id, study_id, subject_id, report, image_path: [...], split}``), images under
    ``<root>/images/`` unless ``images`` says otherwise; the first image of a study is used."""
    root = Path(root)
    path = root / "annotation.json"
    data = read_json(path, "mimic_cxr")
    if not isinstance(data, dict) or split not in data:
        raise ValueError(f"mimic_cxr: {path} has no {split!r} list (keys: train, val, test)")
    image_dir = Path(images) if images is not None else root / "images"
    samples = []
    for i, rec in enumerate(as_list(data[split], path, "mimic_cxr")):
        paths = rec.get("image_path") or []
        image = str(image_dir / paths[0]) if paths else str(image_dir / f"missing-{i}")
        rid, study = rec.get("id", f"#{i}"), rec.get("study_id")
        meta = record_meta("mimic_cxr", rid, split, path, study_id=study)
        report = clean(rec.get("report"))
        samples.append(Sample(image, "xray", REPORT_PROMPT, report, "report", meta=meta))
    return samples
