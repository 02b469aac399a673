"""Questions of ``fedvqa_synth``: a plan drawn before the scene, then the question and answer.

Five question types, single-word answers:

| type | example (public wording) | answers |
|---|---|---|
| ``yesno`` | is there a red kite in the image? | yes, no (balanced) |
| ``count`` | how many balls are in the image? | zero .. three |
| ``color`` | what color is the car? | red, green, blue, yellow, purple |
| ``location`` | is the box on the left or the right? | left, right, top, bottom |
| ``object`` | what is the blue object? | ball, box, car, house, kite, umbrella |

The plan fixes what the scene must hold (e.g. exactly one car for a colour question, no red
kite for a "no" answer); the answer is then read off the scene record, never off the plan.
Each client has its own wording (``TEMPLATES``), like the five Fed-VQA sources do: AQUA asks
about paintings in lower case without a question mark, VizWiz users ask about "this" thing
"in front of me", COCO-QA's questions come from captions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from fedmllm.data.synthetic import weighted_name
from fedmllm.data.synthvqa.scene import CATEGORIES, COLORS, MAX_OBJECTS, PLURALS, Scene, half, side

QTYPES = ("yesno", "count", "color", "location", "object")
NUMBER_WORDS = ("zero", "one", "two", "three")
_T = dict[str, tuple[str, ...]]
TEMPLATES: dict[str, _T] = {
    "public": {
        "yesno": ("is there a {obj} in the image?",),
        "yesno_color": ("is there a {color} {obj} in the image?",),
        "count": ("how many {objs} are in the image?",),
        "color": ("which color does the {obj} have?",),
        "left_right": ("is the {obj} on the left or the right?",),
        "top_bottom": ("is the {obj} at the top or the bottom?",),
        "object": ("what is the {color} object?",),
    },
    "aqua": {
        "yesno": ("is a {obj} painted in this artwork", "does the painting show a {obj}"),
        "yesno_color": ("is there a {color} {obj} in the painting",),
        "count": ("how many {objs} are painted", "how many {objs} does the artist show"),
        "color": (
            "what color is the {obj} painted",
            "which color did the artist use for the {obj}",
        ),
        "left_right": ("on which side of the painting is the {obj}",),
        "top_bottom": ("is the {obj} near the top or the bottom of the painting",),
        "object": (
            "what is the {color} thing in the painting",
            "what did the artist paint {color}",
        ),
    },
    "gqa": {
        "yesno": ("is there a {obj} in this picture?", "do you see a {obj}?"),
        "yesno_color": ("is there a {color} {obj} in this picture?", "do you see a {color} {obj}?"),
        "count": ("how many {objs} are there?",),
        "color": ("what color is the {obj}?", "what is the color of the {obj}?"),
        "left_right": ("which side is the {obj} on?", "is the {obj} to the left or to the right?"),
        "top_bottom": ("is the {obj} in the top or in the bottom of the picture?",),
        "object": ("which kind of object is {color}?", "what is the {color} item?"),
    },
    "vizwiz": {
        "yesno": ("is there a {obj} here?", "can you see a {obj}?"),
        "yesno_color": ("is there a {color} {obj} in front of me?",),
        "count": ("how many {objs} can you see?",),
        "color": ("what color is this {obj}?", "can you tell me the color of the {obj}?"),
        "left_right": ("is the {obj} on my left or my right?",),
        "top_bottom": ("is the {obj} near the top or the bottom?",),
        "object": ("what is this {color} thing?", "what is the {color} object in front of me?"),
    },
    "abstract": {
        "yesno": ("is there a {obj}?",),
        "yesno_color": ("is there a {color} {obj}?",),
        "count": ("how many {objs} are there?", "how many {objs} are in the scene?"),
        "color": ("what color is the {obj}?",),
        "left_right": ("is the {obj} on the left side of the scene or the right side?",),
        "top_bottom": ("is the {obj} at the top of the scene or the bottom?",),
        "object": ("what is {color}?", "what {color} thing is in the scene?"),
    },
    "cocoqa": {
        "yesno": ("is there a {obj} shown?",),
        "yesno_color": ("is there a {color} {obj} shown?",),
        "count": ("how many {objs} are shown?", "how many {objs} are in the picture?"),
        "color": ("what is the color of the {obj}?", "the {obj} is what color?"),
        "left_right": ("what side of the picture is the {obj} on?",),
        "top_bottom": ("is the {obj} in the top or bottom half?",),
        "object": ("what is the {color} object shown?", "what is shown in {color}?"),
    },
}
ANSWER_WORDS = ("yes", "no", "left", "right", "top", "bottom", *NUMBER_WORDS)
_AN = re.compile(r"\ba (?=[aeiou])")  # "a umbrella" -> "an umbrella"


@dataclass
class Plan:
    """What a sample will ask and the objects its scene must hold.

    Attributes:
        qtype: One of ``QTYPES``.
        objects: ``(category, color)`` of every object, the asked-about object first.
        category: The category a question names, if any.
        color: The colour a question names, if any.
        axis: ``left_right`` or ``top_bottom`` for location questions.
    """

    qtype: str
    objects: list[tuple[str, str]]
    category: str | None = None
    color: str | None = None
    axis: str | None = None


def _others(
    rng: np.random.Generator,
    n: int,
    categories: dict[str, float],
    colors: dict[str, float],
    bad: tuple[str | None, str | None],
    exclude_category: tuple[str, ...] = (),
) -> list[tuple[str, str]]:
    """``n`` distractors, none matching ``bad = (category, color)`` (``None`` = any)."""
    out = []
    while len(out) < n:
        cat = weighted_name(rng, categories, exclude_category)
        col = weighted_name(rng, colors)
        if (bad[0] is None or cat == bad[0]) and (bad[1] is None or col == bad[1]):
            continue
        out.append((cat, col))
    return out


def plan_question(
    rng: np.random.Generator,
    qtypes: dict[str, float],
    categories: dict[str, float],
    colors: dict[str, float],
    counts: tuple[float, ...],
) -> Plan:
    """Draw a question type and the objects that make its answer well defined and balanced.

    Args:
        rng: Source of randomness.
        qtypes: Question type -> weight.
        categories: Category -> weight (the client's object mix).
        colors: Colour -> weight.
        counts: Weights of the answers zero..three of counting questions.
    """
    qtype = weighted_name(rng, qtypes)
    cat, col = weighted_name(rng, categories), weighted_name(rng, colors)
    extra = int(rng.integers(0, MAX_OBJECTS - 1))  # 0..2 distractors
    if qtype == "count":
        n = int(rng.choice(len(counts), p=np.asarray(counts) / np.sum(counts)))
        extra = max(extra, 1 if n == 0 else 0)
        extra = min(extra, MAX_OBJECTS - n)
        targets = [(cat, weighted_name(rng, colors)) for _ in range(n)]
        return Plan(qtype, targets + _others(rng, extra, categories, colors, (cat, None)), cat)
    if qtype == "yesno":
        probe_color = col if rng.random() < 0.5 else None
        bad = (cat, probe_color)
        others = _others(rng, extra, categories, colors, bad)
        objects = (
            [(cat, col)] + others
            if rng.random() < 0.5
            else others or _others(rng, 1, categories, colors, bad)
        )
        return Plan(qtype, objects, cat, probe_color)
    if qtype in ("color", "location"):
        axis = ("left_right", "top_bottom")[int(rng.integers(2))] if qtype == "location" else None
        others = _others(rng, extra, categories, colors, (cat, None), exclude_category=(cat,))
        return Plan(qtype, [(cat, col)] + others, cat, None, axis)
    others = _others(rng, extra, categories, colors, (None, col))
    return Plan("object", [(cat, col)] + others, None, col)


def question_text(plan: Plan, rng: np.random.Generator, phrasing: str) -> str:
    """The question of ``plan`` in the wording of ``phrasing`` (``public`` or a client)."""
    table = TEMPLATES[phrasing]
    key = plan.qtype
    if key == "yesno" and plan.color is not None:
        key = "yesno_color"
    elif key == "location":
        key = str(plan.axis)
    options = table[key]
    template = options[int(rng.integers(len(options)))]
    obj = plan.category or ""
    text = template.format(obj=obj, objs=PLURALS.get(obj, ""), color=plan.color or "")
    return _AN.sub("an ", text)


def answer(plan: Plan, scene: Scene) -> str:
    """The answer read off ``scene``; raises when the scene does not fit the plan."""
    if plan.qtype == "yesno":
        return "yes" if scene.of(plan.category, plan.color) else "no"
    if plan.qtype == "count":
        return NUMBER_WORDS[len(scene.of(plan.category))]
    if plan.qtype == "object":
        (thing,) = scene.of(color=plan.color)
        return thing.category
    (thing,) = scene.of(plan.category)
    if plan.qtype == "color":
        return thing.color
    if plan.axis == "left_right":
        return side(thing, scene.image_size)
    return half(thing, scene.image_size)


def vocabulary() -> list[str]:
    """Every token a ``fedvqa_synth`` question or answer can contain, sorted."""
    from fedmllm.data.synthmed.phrases import tokenize

    texts = [t for table in TEMPLATES.values() for opts in table.values() for t in opts]
    texts = [t.replace("{obj}", " ").replace("{objs}", " ").replace("{color}", " ") for t in texts]
    words = [*texts, *CATEGORIES, *PLURALS.values(), *COLORS, *ANSWER_WORDS, "an", "?"]
    return sorted({tok for text in words for tok in tokenize(text)})
