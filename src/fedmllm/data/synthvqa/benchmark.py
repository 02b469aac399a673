"""Assembly of ``fedvqa_synth``: a public split and five Fed-VQA-like clients.

Every sample has its own random stream, seeded by ``(seed, stream, index)``, and is built as
plan -> scene -> image -> question/answer, so every answer is true of its image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedmllm.data import cache
from fedmllm.data.benchmark import Benchmark, resolve_sizes
from fedmllm.data.schema import ClientData, Sample, validate_sample
from fedmllm.data.synthmed.benchmark import finish_synthetic, stack_images, to_payload
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
    style = str(list(spec.styles)[rng.choice(len(spec.styles), p=_p(spec.styles))])
    strength = rng.uniform(*spec.strength)
    plan = plan_question(rng, spec.qtypes, spec.categories, spec.colors, spec.counts)
    scene_id = f"public/{index:06d}" if split == "public" else f"{spec.name}/{split}/{index:06d}"
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


def _p(weights: dict[str, float]) -> np.ndarray:
    p = np.array(list(weights.values()), dtype=float)
    return p / p.sum()


def build(
    seed: int, image_size: int, public_size: int, sizes: dict[str, int], test_size: int
) -> tuple[FedVqaSynth, np.ndarray]:
    """Generate everything in memory; images end up as views of one stacked array."""
    public = [make_sample(PUBLIC, seed, 0, i, image_size, "public") for i in range(public_size)]
    clients = []
    for k, spec in enumerate(CLIENTS):
        train = [
            make_sample(spec, seed, 1 + 2 * k, i, image_size, "train")
            for i in range(sizes[spec.name])
        ]
        test = [make_sample(spec, seed, 2 + 2 * k, i, image_size, "test") for i in range(test_size)]
        style = next(iter(spec.styles))
        clients.append(ClientData(spec.name, "vqa", style, train, test))
    bench = FedVqaSynth(NAME, public, clients)
    return bench, stack_images(bench, image_size)


def from_payload(payload: dict[str, Any], images: np.ndarray) -> FedVqaSynth:
    """Invert :func:`to_payload`."""

    def decode(samples: list[dict[str, Any]]) -> list[Sample]:
        return [cache.decode_sample(d, images, Scene.from_dict) for d in samples]

    clients = [
        ClientData(c["client_id"], c["task"], c["modality"], decode(c["train"]), decode(c["test"]))
        for c in payload["clients"]
    ]
    return FedVqaSynth(payload["name"], decode(payload["public"]), clients)


def load_fedvqa_synth(
    cache_dir: str | Path | None = "data",
    seed: int = 0,
    image_size: int = 32,
    public_size: int = 4000,
    train_sizes: dict[str, int] | None = None,
    test_size: int = 100,
    partition: dict[str, Any] | None = None,
) -> FedVqaSynth:
    """Load ``fedvqa_synth`` from its cache, generating (and caching) it when needed.

    Args:
        cache_dir: Root of the cache (``<cache_dir>/fedvqa_synth/<hash>/``); ``None`` builds
            in memory without caching.
        seed: Non-negative seed; the same arguments always give the same samples.
        image_size: Side of the square images in pixels (at least 16).
        public_size: Samples in the public pretraining split.
        train_sizes: Train samples per client, keyed by client id (``aqua``, ``gqa``,
            ``vizwiz``, ``abstract``, ``cocoqa``) or by task (``vqa``: every client); keys of
            other tasks are ignored. Defaults: Table 6 of Fed-MoLE divided by ten.
        test_size: Test samples per client.
        partition: Optional re-partition of the five source clients
            (``fedmllm.data.partition`` fields); generation and cache do not depend on it.

    Returns:
        The benchmark; ``ClientData.modality`` and ``Sample.modality`` hold the visual style.
    """
    pairs = [(c, "vqa") for c in CLIENT_IDS]
    sizes = resolve_sizes(train_sizes, pairs, DEFAULT_TRAIN_SIZES)
    if seed < 0 or image_size < 16 or public_size < 0 or test_size < 0 or min(sizes.values()) < 0:
        raise ValueError("seed and sizes must be non-negative and image_size at least 16")
    args = {
        "seed": int(seed),
        "image_size": int(image_size),
        "public_size": int(public_size),
        "train_sizes": sizes,
        "test_size": int(test_size),
    }

    def _build() -> tuple[FedVqaSynth, np.ndarray]:
        return build(int(seed), int(image_size), int(public_size), sizes, int(test_size))

    bench = cache.load_or_build(cache_dir, NAME, args, VERSION, _build, to_payload, from_payload)
    return finish_synthetic(bench, partition)
