"""What every generated benchmark (``fedmed_synth``, ``crossmodal_synth``, ``fedvqa_synth``) shares.

A sample is drawn from its own random stream ``(seed, stream, index)``: the public split uses
stream 0 and each client two streams of its own (train, then test), so changing one split's
size never changes another split. A client's validation split draws from stream
``VAL_STREAM_OFFSET + train stream``, a pool of its own: adding it moves no other sample.
A generated benchmark is built in memory (its images end up as rows of one stacked array),
cached through :mod:`fedmllm.data.cache` (the JSON side is :func:`to_payload`),
re-partitioned on load and validated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedmllm.data import cache
from fedmllm.data.benchmark import Benchmark, apply_partition, resolve_sizes, validate_benchmark
from fedmllm.data.schema import ClientData, Sample

# make_sample(spec, seed, stream, index, image_size, split) -> the sample of that stream index.
VAL_STREAM_OFFSET = 1000
"""Validation streams start here (far above the 1 + 2k train / 2 + 2k test streams)."""
MakeSample = Callable[[Any, int, int, int, int, str], Sample]


@dataclass(frozen=True)
class ClientPlan:
    """One generated client: what it draws (``spec``), its ``ClientData`` fields, its streams.

    Attributes:
        spec: The generator's split spec, handed to ``make_sample``.
        client_id: Client id.
        task: ``ClientData.task``.
        modality: ``ClientData.modality``.
        stream: Stream of the train split; the test split draws from ``stream + 1``.
    """

    spec: Any
    client_id: str
    task: str
    modality: str
    stream: int


@dataclass(frozen=True)
class Sampler:
    """What a generated benchmark's samples are: drawn by ``make_sample``, decoded from the cache
    with ``scene_from_dict``, gathered into a ``factory`` benchmark.

    Attributes:
        factory: Benchmark class, called with ``(name, public, clients)``.
        make_sample: ``make_sample(spec, seed, stream, index, image_size, split)``.
        public: Spec of the public split (stream 0).
        scene_from_dict: Rebuilds a sample's scene record from the cache.
    """

    factory: Callable[[str, list[Sample], list[ClientData]], Benchmark]
    make_sample: MakeSample
    public: Any
    scene_from_dict: Callable[[dict], Any]


def plans_in_order(
    specs: Sequence[Any], task: Callable[[Any], str], modality: Callable[[Any], str]
) -> tuple[ClientPlan, ...]:
    """One client per spec (id ``spec.name``), with streams 1 + 2k and 2 + 2k in spec order."""
    return tuple(
        ClientPlan(spec, spec.name, task(spec), modality(spec), 1 + 2 * k)
        for k, spec in enumerate(specs)
    )


def weighted_index(rng: np.random.Generator, weights: Sequence[float] | np.ndarray) -> int:
    """An index drawn with probability proportional to ``weights``."""
    p = np.asarray(weights, dtype=float)
    return int(rng.choice(len(p), p=p / p.sum()))


def weighted_name(
    rng: np.random.Generator, weights: Mapping[str, float], exclude: Sequence[str] = ()
) -> str:
    """A key of ``weights`` (those in ``exclude`` left out) drawn in proportion to its value."""
    names = [n for n in weights if n not in exclude]
    return names[weighted_index(rng, [weights[n] for n in names])]


def sample_id(split_name: str, split: str, index: int) -> str:
    """``public/000042`` or ``<client>/<train|test>/000042``: a generated sample's id."""
    return f"public/{index:06d}" if split == "public" else f"{split_name}/{split}/{index:06d}"


def draw(
    make: MakeSample, spec: Any, seed: int, stream: int, count: int, size: int, split: str
) -> list[Sample]:
    """Samples ``0..count-1`` of one stream."""
    return [make(spec, seed, stream, i, size, split) for i in range(count)]


def generate_client(
    make: MakeSample,
    plan: ClientPlan,
    seed: int,
    sizes: tuple[int, int] | tuple[int, int, int],
    image_size: int,
) -> ClientData:
    """The client of ``plan`` with its train, test and validation samples (``sizes``: their
    counts; the validation count defaults to 0)."""
    train = draw(make, plan.spec, seed, plan.stream, sizes[0], image_size, "train")
    test = draw(make, plan.spec, seed, plan.stream + 1, sizes[1], image_size, "test")
    n_val = sizes[2] if len(sizes) > 2 else 0
    val = draw(make, plan.spec, seed, VAL_STREAM_OFFSET + plan.stream, n_val, image_size, "val")
    return ClientData(plan.client_id, plan.task, plan.modality, train, test, val)


def generate(
    sampler: Sampler, name: str, plans: Sequence[ClientPlan], args: dict[str, Any]
) -> tuple[Any, np.ndarray]:
    """Generate a benchmark in memory; its images end up as views of one stacked array.

    Args:
        sampler: How the samples are drawn and gathered.
        name: Benchmark name.
        plans: The clients, in order.
        args: :func:`generator_args` (seed, image size, split sizes; extra keys are ignored).
    """
    make, seed, size = sampler.make_sample, args["seed"], args["image_size"]
    samples = draw(make, sampler.public, seed, 0, args["public_size"], size, "public")
    val_size = args.get("val_size", 0)
    clients = [
        generate_client(
            make, p, seed, (args["train_sizes"][p.client_id], args["test_size"], val_size), size
        )
        for p in plans
    ]
    bench = sampler.factory(name, samples, clients)
    return bench, stack_images(bench, size)


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

    Rows follow :meth:`Benchmark.all_samples` order (public, then each client's train, test
    and validation samples), the order :func:`generate` stacks the images in.
    """
    row = iter(range(len(bench.all_samples())))

    def encode(samples: list[Sample]) -> list[dict[str, Any]]:
        return [cache.encode_sample(s, next(row)) for s in samples]

    public = encode(bench.public)
    clients = []
    for c in bench.clients:
        train, test, val = encode(c.train), encode(c.test), encode(c.val)
        clients.append(
            {
                "client_id": c.client_id,
                "task": c.task,
                "modality": c.modality,
                "train": train,
                "test": test,
                "val": val,
            }
        )
    return {"name": bench.name, "public": public, "clients": clients}


def generator_args(
    seed: int,
    image_size: int,
    public_size: int,
    train_sizes: dict[str, int],
    test_size: int,
    val_size: int = 0,
) -> dict[str, Any]:
    """The checked arguments that shape a generated benchmark (its cache key's content).

    ``val_size`` enters the key only when positive, so a benchmark without a validation
    split keeps the cache key it had before validation splits existed.

    Raises:
        ValueError: For a negative seed or size, or images smaller than 16 pixels.
    """
    if min(seed, public_size, test_size, val_size, *train_sizes.values()) < 0 or image_size < 16:
        raise ValueError(
            "seed and benchmark sizes (val_size too) must be non-negative and "
            "benchmark.image_size at least 16"
        )
    args = {
        "seed": int(seed),
        "image_size": int(image_size),
        "public_size": int(public_size),
        "train_sizes": train_sizes,
        "test_size": int(test_size),
    }
    if val_size > 0:
        args["val_size"] = int(val_size)
    return args


def no_options() -> dict[str, Any]:
    """The options of a generator that has none (any keyword is refused)."""
    return {}


@dataclass(frozen=True)
class Generator:
    """One generated benchmark: its name, how it draws its samples and which clients it has.

    Its :meth:`load` is the benchmark's loader (the Hydra target of its config).

    Attributes:
        name: Benchmark name, also the cache's first directory level.
        version: Generator version in the cache key: bump it whenever generated content changes.
        sampler: What its samples are.
        clients: The client plans, given the load's arguments (generator arguments + options).
        default_sizes: Train size per client id or task, where ``train_sizes`` does not say.
        options: Checks the generator's own keyword options and returns them as the cache key
            records them (default: no options).
    """

    name: str
    version: int
    sampler: Sampler
    clients: Callable[[dict[str, Any]], Sequence[ClientPlan]]
    default_sizes: Mapping[str, int]
    options: Callable[..., dict[str, Any]] = no_options

    def load(
        self,
        cache_dir: str | Path | None = "data",
        seed: int = 0,
        image_size: int = 32,
        public_size: int = 4000,
        train_sizes: Mapping[str, int] | None = None,
        test_size: int = 100,
        partition: dict[str, Any] | None = None,
        val_size: int = 0,
        **options: Any,
    ) -> Any:
        """Load the benchmark from its cache, generating (and caching) it when needed.

        Args:
            cache_dir: Root of the cache (``<cache_dir>/<name>/<hash>/``); ``None`` builds in
                memory without caching.
            seed: Non-negative seed; the same arguments always give the same samples.
            image_size: Side of the square images in pixels (at least 16).
            public_size: Samples in the public pretraining split.
            train_sizes: Train samples per client, keyed by client id or by task (a client's
                key wins; task keys without a client of that task are ignored); the others
                take :attr:`default_sizes`.
            test_size: Test samples per client.
            val_size: Validation samples per client, drawn from streams of their own (the
                train and test samples do not change with it); what searches score.
            partition: Optional re-partition of the clients (``fedmllm.data.partition``
                fields), e.g. ``{scheme: iid, sources: [report], num_clients: 4,
                report_styles: [structured, narrative, terse]}`` for four report hospitals
                that write differently. Generation and cache do not depend on it.
            **options: The benchmark's own options (``crossmodal_synth``: ``modalities``).

        Returns:
            The benchmark; images are ``HxWx3`` uint8 views of one array.
        """
        recorded = self.options(**options)
        pairs = [(p.client_id, p.task) for p in self.clients(recorded)]
        sizes = resolve_sizes(train_sizes, pairs, self.default_sizes)
        args = {
            **generator_args(seed, image_size, public_size, sizes, test_size, val_size),
            **recorded,
        }
        bench = cache.load_or_build(
            cache_dir,
            self.name,
            args,
            self.version,
            lambda: self.build(args),
            to_payload,
            self.from_payload,
        )
        return finish_synthetic(bench, partition)

    def build(self, args: dict[str, Any]) -> tuple[Any, np.ndarray]:
        """Generate the benchmark of ``args`` in memory (see :func:`generate`)."""
        return generate(self.sampler, self.name, self.clients(args), args)

    def from_payload(self, payload: dict[str, Any], images: np.ndarray) -> Any:
        """Invert :func:`to_payload`; raises ``KeyError``/``IndexError``/``TypeError`` on damage."""

        def decode(samples: list[dict[str, Any]]) -> list[Sample]:
            return [cache.decode_sample(d, images, self.sampler.scene_from_dict) for d in samples]

        clients = [
            ClientData(
                c["client_id"],
                c["task"],
                c["modality"],
                decode(c["train"]),
                decode(c["test"]),
                decode(c.get("val", [])),
            )
            for c in payload["clients"]
        ]
        return self.sampler.factory(payload["name"], decode(payload["public"]), clients)


def finish_synthetic(bench: Benchmark, partition: Any) -> Any:
    """Apply the partition (with the report-style switch) and record validation counts."""
    from fedmllm.data.partition import PartitionConfig
    from fedmllm.data.synthmed.report_styles import restyle, style_words

    bench = apply_partition(bench, partition, restyle)
    if partition is not None and PartitionConfig.from_any(partition).report_styles:
        bench.words = sorted(set(bench.words) | set(style_words()))
    return validate_benchmark(bench)
