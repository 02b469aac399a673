"""Assembly of ``fedmed_synth``: the public split and the three Fed-Med-like clients.

Every sample has its own random stream, seeded by ``(seed, stream, index)``: changing one
split's size never changes another split, and public and client scenes come from disjoint
streams. Samples are built as plan -> scene -> image -> text, so every answer is read off the
scene record the image was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedmllm.data import cache
from fedmllm.data.benchmark import Benchmark, apply_partition, validate_benchmark
from fedmllm.data.schema import TASKS, ClientData, Sample, validate_sample
from fedmllm.data.synthmed.anatomy import ORGANS_BY_MODALITY
from fedmllm.data.synthmed.render import render
from fedmllm.data.synthmed.report import detection_text, report_question, report_text
from fedmllm.data.synthmed.scene import MODALITIES, Scene, sample_scene
from fedmllm.data.synthmed.styles import draw_style, draw_style_id
from fedmllm.data.synthmed.vqa import plan_vqa, vqa_text

NAME = "fedmed_synth"
# Table 6 of the paper (train 2979 / 6558 / 6000) scaled down about tenfold.
DEFAULT_TRAIN_SIZES = {"vqa": 300, "report": 650, "detection": 600}


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
    (0.25, 0.35, 0.25, 0.15),
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
        (0.25, 0.35, 0.25, 0.15),
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
        (0.25, 0.35, 0.25, 0.15),
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


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return names[rng.choice(len(names), p=p / p.sum())]


def make_sample(
    spec: SplitSpec, seed: int, stream: int, index: int, image_size: int, split: str
) -> Sample:
    """Generate sample ``index`` of a split from its own random stream."""
    rng = np.random.default_rng([seed, stream, index])
    task, modality = _pick(rng, spec.tasks), _pick(rng, spec.modalities)
    organs = spec.organs[modality]
    style = draw_style_id(rng, spec.styles)
    scene_id = f"public/{index:06d}" if split == "public" else f"{spec.name}/{split}/{index:06d}"
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
        n = int(rng.choice(4, p=counts / counts.sum()))
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


def build(
    seed: int, image_size: int, public_size: int, train_sizes: dict[str, int], test_size: int
) -> tuple[SynthBenchmark, np.ndarray]:
    """Generate everything in memory; images end up as views of one stacked array."""
    public = [make_sample(PUBLIC, seed, 0, i, image_size, "public") for i in range(public_size)]
    clients = []
    for k, spec in enumerate(CLIENTS):
        train = [
            make_sample(spec, seed, 1 + 2 * k, i, image_size, "train")
            for i in range(train_sizes[spec.name])
        ]
        test = [make_sample(spec, seed, 2 + 2 * k, i, image_size, "test") for i in range(test_size)]
        clients.append(ClientData(spec.name, spec.name, spec.modality_tag, train, test))
    bench = SynthBenchmark(NAME, public, clients)
    return bench, stack_images(bench, image_size)


def stack_images(bench: Benchmark, image_size: int) -> np.ndarray:
    """Stack every sample image (in :meth:`Benchmark.all_samples` order) into one array and
    make each ``Sample.image`` a view of its row, as a cache load does."""
    samples = bench.all_samples()
    images = (
        np.stack([s.image for s in samples])
        if samples
        else np.zeros((0, image_size, image_size, 3), dtype=np.uint8)
    )
    for row, sample in enumerate(samples):
        sample.image = images[row]
    return images


def to_payload(bench: Benchmark) -> dict[str, Any]:
    """The JSON side of the cache: samples with their row in the image array.

    Rows follow :meth:`Benchmark.all_samples` order (public, then each client's train and
    test), the order :func:`build` stacks the images in.
    """
    row = iter(range(len(bench.all_samples())))

    def encode(samples: list[Sample]) -> list[dict[str, Any]]:
        return [cache.encode_sample(s, next(row)) for s in samples]

    public = encode(bench.public)
    clients = []
    for c in bench.clients:
        train, test = encode(c.train), encode(c.test)
        clients.append(
            {
                "client_id": c.client_id,
                "task": c.task,
                "modality": c.modality,
                "train": train,
                "test": test,
            }
        )
    return {"name": bench.name, "public": public, "clients": clients}


def from_payload(
    payload: dict[str, Any], images: np.ndarray, factory: type[Benchmark] | None = None
) -> Benchmark:
    """Invert :func:`to_payload`; raises ``KeyError``/``IndexError``/``TypeError`` on damage.

    Args:
        payload: What :func:`to_payload` wrote.
        images: The cached image array.
        factory: Benchmark class to build (default :class:`SynthBenchmark`), called with
            ``(name, public, clients)``.
    """

    def decode(samples: list[dict[str, Any]]) -> list[Sample]:
        return [cache.decode_sample(d, images, Scene.from_dict) for d in samples]

    clients = [
        ClientData(c["client_id"], c["task"], c["modality"], decode(c["train"]), decode(c["test"]))
        for c in payload["clients"]
    ]
    return (factory or SynthBenchmark)(payload["name"], decode(payload["public"]), clients)


def _resolve_sizes(train_sizes: Any) -> dict[str, int]:
    """Defaults overridden by ``train_sizes`` (a dict or Hydra DictConfig keyed by task)."""
    sizes = dict(DEFAULT_TRAIN_SIZES)
    for key, value in (train_sizes or {}).items():
        if key not in TASKS:
            raise ValueError(f"train_sizes: unknown task {key!r}; use {TASKS}")
        sizes[str(key)] = int(value)
    return sizes


def load_fedmed_synth(
    cache_dir: str | Path | None = "data",
    seed: int = 0,
    image_size: int = 32,
    public_size: int = 4000,
    train_sizes: dict[str, int] | None = None,
    test_size: int = 100,
    partition: dict[str, Any] | None = None,
) -> SynthBenchmark:
    """Load ``fedmed_synth`` from its cache, generating (and caching) it when needed.

    Args:
        cache_dir: Root of the cache (``<cache_dir>/fedmed_synth/<hash>/``); ``None`` builds
            in memory without caching.
        seed: Non-negative seed; the same arguments always give the same samples.
        image_size: Side of the square images in pixels (at least 16).
        public_size: Samples in the public pretraining split.
        train_sizes: Train samples per client, keyed by task (missing keys use the defaults
            ``vqa: 300, report: 650, detection: 600``).
        test_size: Test samples per client.
        partition: Optional re-partition of the three task clients (``fedmllm.data.partition``
            fields), e.g. ``{scheme: iid, sources: [report], num_clients: 4, report_styles:
            [structured, narrative, terse]}`` for four report hospitals that write differently.
            Generation and cache do not depend on it.

    Returns:
        The benchmark; images are ``HxWx3`` uint8 views of one array.
    """
    sizes = _resolve_sizes(train_sizes)
    if seed < 0 or image_size < 16 or public_size < 0 or test_size < 0 or min(sizes.values()) < 0:
        raise ValueError("seed and sizes must be non-negative and image_size at least 16")
    args = {
        "seed": int(seed),
        "image_size": int(image_size),
        "public_size": int(public_size),
        "train_sizes": sizes,
        "test_size": int(test_size),
    }
    bench = cache.load_or_build(
        cache_dir,
        NAME,
        args,
        cache.GENERATOR_VERSION,
        lambda: build(int(seed), int(image_size), int(public_size), sizes, int(test_size)),
        to_payload,
        from_payload,
    )
    return finish_synthetic(bench, partition)


def finish_synthetic(bench: Benchmark, partition: Any) -> Any:
    """Apply the partition (with the report-style switch) and record validation counts."""
    from fedmllm.data.partition import PartitionConfig
    from fedmllm.data.synthmed.report_styles import restyle, style_words

    bench = apply_partition(bench, partition, restyle)
    if partition is not None and PartitionConfig.from_any(partition).report_styles:
        bench.words = sorted(set(bench.words) | set(style_words()))
    return validate_benchmark(bench)
