"""Assembly of ``fedmed_synth``: the public split and the three Fed-Med-like clients.

Every sample has its own random stream, seeded by ``(seed, stream, index)``: changing one
split's size never changes another split, and public and client scenes come from disjoint
streams. Samples are built as plan -> scene -> image -> text, so every answer is read off the
scene record the image was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedmllm.data import cache, synthetic
from fedmllm.data.benchmark import Benchmark
from fedmllm.data.schema import Sample, validate_sample
from fedmllm.data.synthmed.anatomy import ORGANS_BY_MODALITY
from fedmllm.data.synthmed.render import render
from fedmllm.data.synthmed.report import detection_text, report_question, report_text
from fedmllm.data.synthmed.scene import MODALITIES, Scene, sample_scene
from fedmllm.data.synthmed.styles import draw_style, draw_style_id
from fedmllm.data.synthmed.vqa import plan_vqa, vqa_text

NAME = "fedmed_synth"
# Table 6 of the paper (train 2979 / 6558 / 6000) scaled down about tenfold.
DEFAULT_TRAIN_SIZES = {"vqa": 300, "report": 650, "detection": 600}
# Weights of 0..3 lesions in a report scene: the mix of every split but the detection client's.
LESION_COUNTS = (0.25, 0.35, 0.25, 0.15)


@dataclass(frozen=True)
class SplitSpec:
    """How one split draws its samples.

    Attributes:
        name: ``public`` or a client id.
        tasks: Task -> weight.
        modalities: Modality -> weight.
        organs: Modality -> organs shown.
        styles: Sub-style weights (``None``: uniform over the public sub-styles).
        lesion_counts: Weights of 0..3 lesions for report scenes (detection drops 0).
        phrasing: ``public`` or ``client`` wording.
        modality_tag: ``ClientData.modality``.
    """

    name: str
    tasks: dict[str, float]
    modalities: dict[str, float]
    organs: dict[str, tuple[str, ...]]
    styles: tuple[float, ...] | None
    lesion_counts: tuple[float, float, float, float]
    phrasing: str
    modality_tag: str = "mixed"


PUBLIC = SplitSpec(
    "public",
    {"vqa": 0.5, "report": 0.25, "detection": 0.25},
    dict.fromkeys(MODALITIES, 1.0),
    ORGANS_BY_MODALITY,
    None,
    LESION_COUNTS,
    "public",
)
CLIENTS = (
    # SLAKE / VQA-RAD: CT and MRI of several organs.
    SplitSpec(
        "vqa",
        {"vqa": 1.0},
        {"ct": 0.5, "mri": 0.5},
        {"ct": ORGANS_BY_MODALITY["ct"], "mri": ORGANS_BY_MODALITY["mri"]},
        (0.15, 0.15, 0.2, 0.5),
        LESION_COUNTS,
        "client",
        "mixed",
    ),
    # MIMIC-CXR: chest radiographs.
    SplitSpec(
        "report",
        {"report": 1.0},
        {"xray": 1.0},
        {"xray": ("lung",)},
        (0.1, 0.2, 0.2, 0.5),
        LESION_COUNTS,
        "client",
        "xray",
    ),
    # RadGenome-ChestCT: chest CT with at least one lesion.
    SplitSpec(
        "detection",
        {"detection": 1.0},
        {"ct": 1.0},
        {"ct": ("lung",)},
        (0.2, 0.1, 0.2, 0.5),
        (0.0, 0.45, 0.35, 0.2),
        "client",
        "ct",
    ),
)


@dataclass
class SynthBenchmark(Benchmark):
    """A generated synthetic-medical benchmark: public pretraining split and clients."""

    def vocabulary(self) -> list[str]:
        """Every token the benchmark's texts can contain (the tiny model's word list).

        The template vocabulary, plus ``words`` (e.g. those of extra report styles).
        """
        from fedmllm.data.synthmed.vocab import vocabulary

        return sorted(set(vocabulary()) | set(self.words))


def make_sample(
    spec: SplitSpec, seed: int, stream: int, index: int, image_size: int, split: str
) -> Sample:
    """Generate sample ``index`` of a split from its own random stream."""
    rng = np.random.default_rng([seed, stream, index])
    task, modality = (
        synthetic.weighted_name(rng, spec.tasks),
        synthetic.weighted_name(rng, spec.modalities),
    )
    organs = spec.organs[modality]
    style = draw_style_id(rng, spec.styles)
    scene_id = synthetic.sample_id(spec.name, split, index)
    kwargs: dict[str, Any] = {}
    plan = None
    if task == "vqa":
        plan = plan_vqa(rng, spec.phrasing, modality, organs)
        organ, n = plan.organ, plan.n_lesions
        kwargs = {"required_kinds": plan.required_kinds, "forbidden_kinds": plan.forbidden_kinds}
    else:
        organ = str(organs[rng.integers(len(organs))])
        counts = np.array(spec.lesion_counts, dtype=float)
        if task == "detection":
            counts[0] = 0.0
        n = synthetic.weighted_index(rng, counts)
    scene = sample_scene(
        rng,
        scene_id=scene_id,
        modality=modality,
        organ=organ,
        n_lesions=n,
        image_size=image_size,
        style=style,
        style_params=draw_style(rng, modality, style),
        **kwargs,
    )
    image = render(scene, rng)
    meta: dict[str, Any] = {
        "source": NAME,
        "scene": scene,
        "split": split,
        "phrasing": spec.phrasing,
    }
    if plan is not None:
        question, answer, answer_type = vqa_text(plan, scene, rng, spec.phrasing)
        meta["qtype"] = plan.qtype
        sample = Sample(image, modality, question, answer, "vqa", answer_type, meta=meta)
    elif task == "report":
        meta["qtype"] = "report"
        question = report_question(rng, spec.phrasing)
        text = report_text(scene, spec.phrasing)
        sample = Sample(image, modality, question, text, "report", meta=meta)
    else:
        meta["qtype"] = "box"
        question, answer, box = detection_text(scene, rng, spec.phrasing)
        sample = Sample(image, modality, question, answer, "detection", box=box, meta=meta)
    validate_sample(sample, where=scene_id)
    return sample


# Streams: 0 public, then two per client (train, test) in the order of CLIENTS.
SAMPLER = synthetic.Sampler(SynthBenchmark, make_sample, PUBLIC, Scene.from_dict)
PLANS = synthetic.plans_in_order(CLIENTS, lambda spec: spec.name, lambda spec: spec.modality_tag)
FEDMED_SYNTH = synthetic.Generator(
    NAME, cache.GENERATOR_VERSION, SAMPLER, lambda _args: PLANS, DEFAULT_TRAIN_SIZES
)
# The loader (``configs/benchmark/fedmed_synth.yaml``); ``train_sizes`` is keyed by task.
load_fedmed_synth = FEDMED_SYNTH.load
