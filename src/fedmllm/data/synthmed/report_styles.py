"""Report-writing styles: the same findings written the way different hospitals write them.

The per-client style switch (``partition.report_styles``) rewrites every report of a client
from its scene record in one of these styles, so report clients can differ in *how* they
write while seeing the same kind of images:

- ``structured``: the default client style (section headers, patient side, zones).
- ``narrative``: running prose without headers.
- ``terse``: a short list in abbreviations, as some reading rooms dictate.
- ``public``: the neutral wording of the public split (positions on the image).
"""

from __future__ import annotations

import re
from dataclasses import replace

from fedmllm.data.schema import Sample
from fedmllm.data.synthmed.phrases import NUMBER_WORDS, image_half, patient_side, tokenize
from fedmllm.data.synthmed.report import CLIENT_WORDS, report_text
from fedmllm.data.synthmed.scene import Scene

_PLACEHOLDER = re.compile(r"\{[a-z_]*\}")
STYLES = ("structured", "narrative", "terse", "public")
NARRATIVE = {
    "view": {"lung": "the frontal chest radiograph", "kidney": "the frontal abdominal radiograph"},
    "clear": {"lung": "shows clear lungs without a focal lesion.", "kidney": "is unremarkable."},
    "normal": "normal study.",
    "some": "shows {count}.",
    "item": "there is a {size} {kind} in the {side} {half} {zone}",
    "and": "and",
    "abnormal": "overall an abnormal study.",
    "noun": ("focal lesion", "focal lesions"),
}
TERSE = {
    "clear": "no lesion. normal.",
    "some": "{n} {noun}:",
    "noun": ("lesion", "lesions"),
    "item": "{size} {kind} {side} {half}",
    "kind": {"cyst": "cyst", "tumor": "mass", "calcification": "calc"},
    "size": {"small": "sm", "medium": "med", "large": "lg"},
    "side": {"left": "lt", "right": "rt"},
    "half": {"upper": "up", "lower": "low"},
}


def styled_report(scene: Scene, style: str) -> str:
    """The report of ``scene`` in ``style`` (one of ``STYLES``)."""
    if style == "structured":
        return report_text(scene, "client")
    if style == "public":
        return report_text(scene, "public")
    if style == "narrative":
        return _narrative(scene)
    if style == "terse":
        return _terse(scene)
    raise ValueError(f"unknown report style {style!r}; use one of {STYLES}")


def _organ(scene: Scene) -> str:
    return scene.organ if scene.organ in NARRATIVE["view"] else "lung"


def _narrative(scene: Scene) -> str:
    w, organ, size = NARRATIVE, _organ(scene), scene.image_size
    view = w["view"][organ]
    if not scene.lesions:
        return f"{view} {w['clear'][organ]} {w['normal']}"
    singular, plural = w["noun"]
    n = len(scene.lesions)
    count = f"{NUMBER_WORDS[n]} {singular if n == 1 else plural}"
    items = [
        w["item"].format(
            size=CLIENT_WORDS["size"][les.size],
            kind=CLIENT_WORDS["kind"][les.kind],
            side=patient_side(les, size),
            half=image_half(les, size),
            zone=CLIENT_WORDS["zone"][organ],
        )
        for les in scene.lesions
    ]
    listed = items[0] if n == 1 else ", ".join(items[:-1]) + f" {w['and']} " + items[-1]
    return f"{view} {w['some'].format(count=count)} {listed}. {w['abnormal']}"


def _terse(scene: Scene) -> str:
    w, size = TERSE, scene.image_size
    if not scene.lesions:
        return w["clear"]
    n = len(scene.lesions)
    head = w["some"].format(n=NUMBER_WORDS[n], noun=w["noun"][0 if n == 1 else 1])
    items = "; ".join(
        w["item"].format(
            size=w["size"][les.size],
            kind=w["kind"][les.kind],
            side=w["side"][patient_side(les, size)],
            half=w["half"][image_half(les, size)],
        )
        for les in scene.lesions
    )
    return f"{head} {items}."


def restyle(sample: Sample, style: str) -> Sample:
    """``sample`` with its report rewritten in ``style`` (other tasks unchanged)."""
    if sample.task != "report":
        return sample
    meta = {**sample.meta, "report_style": style}
    return replace(sample, answer=styled_report(sample.meta["scene"], style), meta=meta)


def style_words() -> list[str]:
    """Every token the extra styles can emit (added to the benchmark's vocabulary)."""
    texts: list[str] = []
    for table in (NARRATIVE, TERSE):
        for value in table.values():
            items = value.values() if isinstance(value, dict) else [value]
            for item in items:
                texts.extend(item if isinstance(item, tuple) else [item])
    return sorted({t for text in texts for t in tokenize(_PLACEHOLDER.sub(" ", text))})
