"""Assembly of ``fedvqa_synth``: a public split and five Fed-VQA-like clients.

Every sample has its own random stream, seeded by ``(seed, stream, index)``, and is built as
plan -> scene -> image -> question/answer, so every answer is true of its image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedmllm.data import synthetic
from fedmllm.data.benchmark import Benchmark
from fedmllm.data.schema import Sample, validate_sample
from fedmllm.data.synthvqa.questions import (
    QTYPES,
    answer,
    plan_question,
    question_text,
    vocabulary,
)
from fedmllm.data.synthvqa.render import STYLES, draw_params, render
from fedmllm.data.synthvqa.scene import CATEGORIES, COLORS, Scene, build_scene

NAME = "fedvqa_synth"
VERSION = 1
# Fed-MoLE Table 6 (AQUA 2518, GQA 2534, VizWiz 2493, Abstract 2476, COCO-QA 2487 train)
# scaled down tenfold.
DEFAULT_TRAIN_SIZES = {"aqua": 252, "gqa": 253, "vizwiz": 249, "abstract": 248, "cocoqa": 249}
_EVEN_COUNTS = (0.2, 0.35, 0.3, 0.15)


@dataclass(frozen=True)
class Spec:
    """How one split draws its samples.

    Attributes:
        name: ``public`` or a client id.
        styles: Visual style -> weight (clients have one style each).
        strength: Range of the style strength.
        qtypes: Question type -> weight.
        categories: Object category -> weight.
        colors: Colour -> weight.
        counts: Weights of the counting answers zero..three.
    """

    name: str
    styles: dict[str, float]
    strength: tuple[float, float]
    qtypes: dict[str, float]
    categories: dict[str, float]
    colors: dict[str, float]
    counts: tuple[float, ...] = _EVEN_COUNTS


def _w(names: tuple[str, ...], values: tuple[float, ...]) -> dict[str, float]:
    return dict(zip(names, values, strict=True))


_CLIENT_STRENGTH = (0.6, 1.0)
PUBLIC = Spec(
    "public",
    dict.fromkeys(STYLES, 1.0),
    (0.1, 0.5),
    dict.fromkeys(QTYPES, 1.0),
    dict.fromkeys(CATEGORIES, 1.0),
    dict.fromkeys(COLORS, 1.0),
)
# Weights in the orders of QTYPES (yesno count color location object), CATEGORIES (ball box
# car house kite umbrella) and COLORS (red green blue yellow purple). The question-type mixes
# follow each source's character (COCO-QA has no yes/no questions; Abstract Scenes are rich in
# yes/no and counting; VizWiz users mostly ask what and which colour a thing is).
CLIENTS = (
    Spec(
        "aqua",
        {"art": 1.0},
        _CLIENT_STRENGTH,
        _w(QTYPES, (0.2, 0.1, 0.25, 0.1, 0.35)),
        _w(CATEGORIES, (0.1, 0.1, 0.1, 0.35, 0.15, 0.2)),
        _w(tuple(COLORS), (0.3, 0.2, 0.15, 0.25, 0.1)),
    ),
    Spec(
        "gqa",
        {"photo": 1.0},
        _CLIENT_STRENGTH,
        _w(QTYPES, (0.25, 0.1, 0.15, 0.3, 0.2)),
        _w(CATEGORIES, (0.15, 0.1, 0.3, 0.25, 0.1, 0.1)),
        dict.fromkeys(COLORS, 1.0),
    ),
    Spec(
        "vizwiz",
        {"blurry": 1.0},
        _CLIENT_STRENGTH,
        _w(QTYPES, (0.3, 0.05, 0.3, 0.05, 0.3)),
        _w(CATEGORIES, (0.15, 0.35, 0.05, 0.05, 0.1, 0.3)),
        _w(tuple(COLORS), (0.2, 0.15, 0.3, 0.15, 0.2)),
    ),
    Spec(
        "abstract",
        {"cartoon": 1.0},
        _CLIENT_STRENGTH,
        _w(QTYPES, (0.4, 0.3, 0.1, 0.1, 0.1)),
        _w(CATEGORIES, (0.3, 0.1, 0.1, 0.15, 0.25, 0.1)),
        dict.fromkeys(COLORS, 1.0),
        (0.15, 0.3, 0.3, 0.25),
    ),
    Spec(
        "cocoqa",
        {"object": 1.0},
        _CLIENT_STRENGTH,
        _w(QTYPES, (0.0, 0.15, 0.25, 0.1, 0.5)),
        _w(CATEGORIES, (0.2, 0.15, 0.25, 0.1, 0.1, 0.2)),
        _w(tuple(COLORS), (0.25, 0.15, 0.25, 0.2, 0.15)),
    ),
)
CLIENT_IDS = tuple(c.name for c in CLIENTS)


@dataclass
class FedVqaSynth(Benchmark):
    """The generated ``fedvqa_synth`` benchmark."""

    def vocabulary(self) -> list[str]:
        """Every token any template or answer can emit."""
        return vocabulary()


def make_sample(spec: Spec, seed: int, stream: int, index: int, size: int, split: str) -> Sample:
    """Generate sample ``index`` of a split from its own random stream."""
    rng = np.random.default_rng([seed, stream, index])
    style = synthetic.weighted_name(rng, spec.styles)
    strength = rng.uniform(*spec.strength)
    plan = plan_question(rng, spec.qtypes, spec.categories, spec.colors, spec.counts)
    scene_id = synthetic.sample_id(spec.name, split, index)
    scene = build_scene(
        rng,
        scene_id=scene_id,
        style=style,
        image_size=size,
        strength=strength,
        objects=plan.objects,
        main_first=style == "object",
    )
    scene.params = draw_params(rng, style, strength)
    image = render(scene, rng)
    phrasing = "public" if split == "public" else spec.name
    meta = {
        "source": NAME,
        "scene": scene,
        "split": split,
        "phrasing": phrasing,
        "qtype": plan.qtype,
        "id": scene_id,
    }
    question = question_text(plan, rng, phrasing)
    answer_type = "closed" if plan.qtype == "yesno" else "open"
    sample = Sample(image, style, question, answer(plan, scene), "vqa", answer_type, meta=meta)
    validate_sample(sample, where=scene_id)
    return sample


# Streams: 0 public, then two per client (train, test) in the order of CLIENTS.
SAMPLER = synthetic.Sampler(FedVqaSynth, make_sample, PUBLIC, Scene.from_dict)
PLANS = synthetic.plans_in_order(CLIENTS, lambda _spec: "vqa", lambda spec: next(iter(spec.styles)))
FEDVQA_SYNTH = synthetic.Generator(NAME, VERSION, SAMPLER, lambda _args: PLANS, DEFAULT_TRAIN_SIZES)
# The loader (``configs/benchmark/fedvqa_synth.yaml``): ``train_sizes`` keyed by client id
# (``aqua``, ``gqa``, ``vizwiz``, ``abstract``, ``cocoqa``) or by task (``vqa``: every client),
# default Table 6 of Fed-MoLE divided by ten. ``ClientData.modality`` and ``Sample.modality``
# hold the visual style.
load_fedvqa_synth = FEDVQA_SYNTH.load
