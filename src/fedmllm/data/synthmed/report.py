"""Report and detection texts, in the neutral public wording and in the clients' own styles.

Reports are a deterministic function of the scene record (lesions listed largest first), so a
model can learn them exactly. The public style describes positions on the image ("at the top
left"); the report client writes like a chest radiograph report with section headers, the
patient's side ("right upper zone"), and its own words ("mass", "moderate").
"""

from __future__ import annotations

import numpy as np

from fedmllm.data.synthmed.phrases import (
    MODALITY_WORDS,
    box_from_text,
    count_noun,
    format_box,
    image_half,
    image_side,
    patient_side,
)
from fedmllm.data.synthmed.scene import Lesion, Scene

REPORT_QUESTIONS = {
    "public": ("describe the image.", "what does the image show?"),
    "client": (
        "write the findings of this radiograph.",
        "generate the radiology report.",
        "what are the findings?",
    ),
}
DETECTION_QUESTIONS = {
    "public": ("where is the largest lesion? give its box.", "give the box of the largest lesion."),
    "client": (
        "locate the largest lesion in this ct scan.",
        "find the dominant abnormality and give its bounding box.",
        "output the bounding box of the biggest lesion.",
        "where is the main lesion? answer with a bounding box.",
    ),
}
PUBLIC_WORDS = {
    "intro": "{modality} image of the {organ}.",
    "none": "it shows no lesion.",
    "some": "it shows {count}:",
    "item": "a {size} {kind} at the {half} {side}",
    "half": {"upper": "top", "lower": "bottom"},
    "and": "and",
    "noun": ("lesion", "lesions"),
}
CLIENT_WORDS = {
    "header": "findings:",
    "view": {"lung": "frontal chest radiograph.", "kidney": "frontal abdominal radiograph."},
    "clear": {
        "lung": "no focal lesion. the lungs are clear.",
        "kidney": "no focal lesion. the renal outlines are normal.",
    },
    "some": "{count}:",
    "item": "{size} {kind}, {side} {half} {zone}",
    "zone": {"lung": "zone", "kidney": "quadrant"},
    "kind": {"cyst": "cyst", "tumor": "mass", "calcification": "calcification"},
    "size": {"small": "small", "medium": "moderate", "large": "large"},
    "noun": ("focal lesion", "focal lesions"),
    "impression": {"none": "impression: no acute disease.", "some": "impression: abnormal study."},
}


def report_question(rng: np.random.Generator, phrasing: str) -> str:
    """A request for a report in ``phrasing``."""
    options = REPORT_QUESTIONS[phrasing]
    return options[rng.integers(len(options))]


def report_text(scene: Scene, phrasing: str) -> str:
    """The report of ``scene`` in ``phrasing`` (``public`` or ``client``)."""
    return _client_report(scene) if phrasing == "client" else _public_report(scene)


def _public_report(scene: Scene) -> str:
    w = PUBLIC_WORDS
    intro = w["intro"].format(modality=MODALITY_WORDS[scene.modality], organ=scene.organ)
    if not scene.lesions:
        return f"{intro} {w['none']}"
    items = [_public_item(les, scene.image_size) for les in scene.lesions]
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {w['and']} {items[-1]}"
    some = w["some"].format(count=count_noun(len(items), *w["noun"]))
    return f"{intro} {some} {listed}."


def _public_item(les: Lesion, size: int) -> str:
    half = PUBLIC_WORDS["half"][image_half(les, size)]
    return PUBLIC_WORDS["item"].format(
        size=les.size, kind=les.kind, half=half, side=image_side(les, size)
    )


def _client_report(scene: Scene) -> str:
    w = CLIENT_WORDS
    organ = scene.organ if scene.organ in w["view"] else "lung"
    head = f"{w['header']} {w['view'][organ]}"
    if not scene.lesions:
        return f"{head} {w['clear'][organ]} {w['impression']['none']}"
    items = "; ".join(
        w["item"].format(
            size=w["size"][les.size],
            kind=w["kind"][les.kind],
            side=patient_side(les, scene.image_size),
            half=image_half(les, scene.image_size),
            zone=w["zone"][organ],
        )
        for les in scene.lesions
    )
    some = w["some"].format(count=count_noun(len(scene.lesions), *w["noun"]))
    return f"{head} {some} {items}. {w['impression']['some']}"


def detection_text(
    scene: Scene, rng: np.random.Generator, phrasing: str
) -> tuple[str, str, tuple[float, float, float, float]]:
    """A request to locate the largest lesion, its box text, and the box it encodes.

    Returns:
        ``(question, answer, box)`` where ``answer`` is ``[x1, y1, x2, y2]`` with two decimals
        and ``box`` is exactly the parsed answer, so text and ``Sample.box`` agree.
    """
    largest = scene.largest
    if largest is None:
        raise ValueError(f"{scene.scene_id}: detection scene without lesions")
    options = DETECTION_QUESTIONS[phrasing]
    answer = format_box(largest.box)
    box = box_from_text(answer)
    assert box is not None  # format_box always writes the parsable form
    return options[rng.integers(len(options))], answer, box
