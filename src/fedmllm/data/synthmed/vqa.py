"""VQA questions: a plan drawn before the scene, then the question and its answer.

The question type is drawn first and constrains the scene (e.g. a yes/no presence question
draws its answer, then a scene with or without lesions), which keeps yes/no balanced and every
answer true of the image. Two phrasings exist: ``public`` (neutral, used to pretrain the tiny
model) and ``client`` (the VQA hospital's own wording and its radiological side convention:
"left" means the patient's left, which is the image's right).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedmllm.data.synthetic import weighted_name
from fedmllm.data.synthmed.anatomy import ORGANS_BY_MODALITY
from fedmllm.data.synthmed.phrases import (
    MODALITY_WORDS,
    NUMBER_WORDS,
    image_half,
    image_side,
    patient_side,
)
from fedmllm.data.synthmed.scene import LESION_KINDS, MAX_LESIONS, Scene

CLOSED_TYPES = ("presence", "kind_presence", "organ_check")
OPEN_TYPES = ("count", "side", "vertical", "organ", "modality", "kind", "size")
# Question types whose answer describes the largest lesion, so the scene needs one.
_NEEDS_LESION = ("side", "vertical", "kind", "size")

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "public": {
        "presence": ("is there a lesion in the image?",),
        "kind_presence": ("is there a {kind} in the image?",),
        "organ_check": ("does the image show the {organ}?",),
        "count": ("how many lesions are in the image?",),
        "side": ("is the largest lesion on the left or the right of the image?",),
        "vertical": ("is the largest lesion at the top or the bottom of the image?",),
        "organ": ("what organ does the image show?",),
        "modality": ("what kind of image is this?",),
        "kind": ("what type is the largest lesion?",),
        "size": ("what size is the largest lesion?",),
    },
    "client": {
        "presence": (
            "is there any abnormality?",
            "does this scan look abnormal?",
            "are there abnormal findings in this scan?",
        ),
        "kind_presence": ("does the patient have a {kind}?", "is a {kind} seen in this scan?"),
        "organ_check": ("is this a scan of the {organ}?", "is the {organ} shown here?"),
        "count": ("how many abnormalities are seen?", "how many lesions does the patient have?"),
        "side": (
            "which side of the patient is the biggest abnormality on?",
            "on which side of the body is the main lesion?",
        ),
        "vertical": (
            "is the biggest abnormality in the upper or lower part?",
            "is the main lesion upper or lower?",
        ),
        "organ": ("which organ is imaged?", "what organ is this?"),
        "modality": ("which modality was used?", "how was this image acquired?"),
        "kind": ("what is the biggest abnormality?", "what kind of lesion is the main one?"),
        "size": ("how big is the biggest abnormality?", "what is the size of the main lesion?"),
    },
}
# Answer words that differ by phrasing; the others are shared.
HALF_WORDS = {
    "public": {"upper": "top", "lower": "bottom"},
    "client": {"upper": "upper", "lower": "lower"},
}
_QTYPE_WEIGHTS = {
    "public": {
        "presence": 0.2,
        "kind_presence": 0.2,
        "organ_check": 0.1,
        "count": 0.1,
        "side": 0.08,
        "vertical": 0.08,
        "organ": 0.06,
        "modality": 0.06,
        "kind": 0.07,
        "size": 0.05,
    },
    "client": {
        "presence": 0.2,
        "kind_presence": 0.15,
        "organ_check": 0.1,
        "count": 0.1,
        "side": 0.1,
        "vertical": 0.08,
        "organ": 0.08,
        "modality": 0.05,
        "kind": 0.08,
        "size": 0.06,
    },
}


@dataclass
class VqaPlan:
    """What a VQA sample will ask, and the constraints its scene must meet.

    Attributes:
        qtype: One of ``CLOSED_TYPES + OPEN_TYPES``.
        organ: The organ the scene shows.
        n_lesions: Number of lesions in the scene.
        probe: The kind or organ named in a closed question, if any.
        required_kinds: Kinds the scene must contain.
        forbidden_kinds: Kinds the scene must not contain.
    """

    qtype: str
    organ: str
    n_lesions: int
    probe: str | None = None
    required_kinds: tuple[str, ...] = ()
    forbidden_kinds: tuple[str, ...] = ()


def plan_vqa(
    rng: np.random.Generator, phrasing: str, modality: str, organs: tuple[str, ...]
) -> VqaPlan:
    """Draw a question type and the scene constraints that give a balanced answer.

    Args:
        rng: Source of randomness.
        phrasing: ``"public"`` or ``"client"`` (sets the mix of question types).
        modality: The scene's modality.
        organs: The organs this split shows for ``modality``.
    """
    qtype = weighted_name(rng, _QTYPE_WEIGHTS[phrasing])
    organ = str(organs[rng.integers(len(organs))])
    any_n = int(rng.integers(0, MAX_LESIONS + 1))
    some_n = int(rng.integers(1, MAX_LESIONS + 1))
    yes = bool(rng.random() < 0.5)
    if qtype == "presence":
        return VqaPlan(qtype, organ, some_n if yes else 0)
    if qtype == "kind_presence":
        kind = str(LESION_KINDS[rng.integers(len(LESION_KINDS))])
        if yes:
            return VqaPlan(qtype, organ, some_n, probe=kind, required_kinds=(kind,))
        return VqaPlan(qtype, organ, any_n, probe=kind, forbidden_kinds=(kind,))
    if qtype == "organ_check":
        others = [o for o in ORGANS_BY_MODALITY[modality] if o != organ]
        probe = organ if yes else str(others[rng.integers(len(others))])
        return VqaPlan(qtype, organ, any_n, probe=probe)
    return VqaPlan(qtype, organ, some_n if qtype in _NEEDS_LESION else any_n)


def vqa_text(
    plan: VqaPlan, scene: Scene, rng: np.random.Generator, phrasing: str
) -> tuple[str, str, str]:
    """The question, its answer read off ``scene``, and the answer type.

    Returns:
        ``(question, answer, answer_type)`` with ``answer_type`` ``"closed"`` or ``"open"``.
    """
    templates = TEMPLATES[phrasing][plan.qtype]
    template = templates[rng.integers(len(templates))]
    question = template.format(kind=plan.probe, organ=plan.probe)
    return (
        question,
        _answer(plan, scene, phrasing),
        ("closed" if plan.qtype in CLOSED_TYPES else "open"),
    )


def _answer(plan: VqaPlan, scene: Scene, phrasing: str) -> str:
    """The answer, computed from the scene record rather than trusted from the plan."""
    size, largest = scene.image_size, scene.largest
    qtype = plan.qtype
    if qtype == "presence":
        return "yes" if scene.lesions else "no"
    if qtype == "kind_presence":
        return "yes" if any(les.kind == plan.probe for les in scene.lesions) else "no"
    if qtype == "organ_check":
        return "yes" if scene.organ == plan.probe else "no"
    if qtype == "count":
        return NUMBER_WORDS[len(scene.lesions)]
    if qtype == "organ":
        return scene.organ
    if qtype == "modality":
        return MODALITY_WORDS[scene.modality]
    if largest is None:
        raise ValueError(f"{scene.scene_id}: {qtype!r} question about a scene without lesions")
    if qtype == "side":
        return patient_side(largest, size) if phrasing == "client" else image_side(largest, size)
    if qtype == "vertical":
        return HALF_WORDS[phrasing][image_half(largest, size)]
    if qtype == "kind":
        return largest.kind
    return largest.size
