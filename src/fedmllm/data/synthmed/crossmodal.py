"""``crossmodal_synth``: one imaging modality per client (the X-FLoRA setting).

Four hospitals by default, ``ct``, ``mri``, ``xray`` and ``us``; each holds VQA samples of its
own modality only (every organ that modality shows in ``fedmed_synth``), written in the
clients' wording, with the clients' sub-style mix (half of the images from the "site scanner"
sub-style the public split never shows). So the clients differ first of all in what their
images look like, while the questions are drawn from one shared distribution.

The public split is ``fedmed_synth``'s public split (same random stream, same arguments give
the same samples), so both benchmarks pretrain, and cache, the same tiny model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedmllm.data import cache
from fedmllm.data.benchmark import resolve_sizes
from fedmllm.data.schema import ClientData
from fedmllm.data.synthmed.anatomy import ORGANS_BY_MODALITY
from fedmllm.data.synthmed.benchmark import (
    PUBLIC,
    SplitSpec,
    SynthBenchmark,
    finish_synthetic,
    from_payload,
    make_sample,
    stack_images,
    to_payload,
)
from fedmllm.data.synthmed.scene import MODALITIES

NAME = "crossmodal_synth"
VERSION = 1
DEFAULT_TRAIN_SIZE = 300
# Client streams start here, far from fedmed_synth's (0 public, 1-6 clients); each modality
# owns two fixed streams, so choosing a subset of modalities never changes a client's data.
_STREAM_BASE = 100
_CLIENT_STYLES = (0.15, 0.15, 0.2, 0.5)
_LESION_COUNTS = (0.25, 0.35, 0.25, 0.15)


def client_spec(modality: str) -> SplitSpec:
    """The split spec of the client holding ``modality``."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; use a subset of {MODALITIES}")
    return SplitSpec(
        name=modality,
        tasks={"vqa": 1.0},
        modalities={modality: 1.0},
        organs={modality: ORGANS_BY_MODALITY[modality]},
        styles=_CLIENT_STYLES,
        lesion_counts=_LESION_COUNTS,
        phrasing="client",
        modality_tag=modality,
    )


def build(
    seed: int,
    image_size: int,
    public_size: int,
    sizes: dict[str, int],
    test_size: int,
    modalities: tuple[str, ...],
) -> tuple[SynthBenchmark, np.ndarray]:
    """Generate everything in memory; images end up as views of one stacked array."""
    public = [make_sample(PUBLIC, seed, 0, i, image_size, "public") for i in range(public_size)]
    clients = []
    for modality in modalities:
        spec = client_spec(modality)
        stream = _STREAM_BASE + 2 * MODALITIES.index(modality)
        train = [
            make_sample(spec, seed, stream, i, image_size, "train") for i in range(sizes[modality])
        ]
        test = [
            make_sample(spec, seed, stream + 1, i, image_size, "test") for i in range(test_size)
        ]
        clients.append(ClientData(modality, "vqa", modality, train, test))
    bench = SynthBenchmark(NAME, public, clients)
    return bench, stack_images(bench, image_size)


def load_crossmodal_synth(
    cache_dir: str | Path | None = "data",
    seed: int = 0,
    image_size: int = 32,
    public_size: int = 4000,
    train_sizes: dict[str, int] | None = None,
    test_size: int = 100,
    modalities: list[str] | tuple[str, ...] = MODALITIES,
    partition: dict[str, Any] | None = None,
) -> SynthBenchmark:
    """Load ``crossmodal_synth`` from its cache, generating (and caching) it when needed.

    Args:
        cache_dir: Root of the cache (``<cache_dir>/crossmodal_synth/<hash>/``); ``None``
            builds in memory without caching.
        seed: Non-negative seed; the same arguments always give the same samples.
        image_size: Side of the square images in pixels (at least 16).
        public_size: Samples in the public pretraining split (``fedmed_synth``'s).
        train_sizes: Train samples per client, keyed by task (``vqa`` applies to every client)
            or by client id (``ct``, ``mri``, ``xray``, ``us``); keys of other tasks are ignored.
            Default 300 per client.
        test_size: Test samples per client.
        modalities: The clients, one per modality, in order.
        partition: Optional re-partition of the modality clients (``fedmllm.data.partition``
            fields, e.g. ``{scheme: dirichlet, num_clients: 10, alpha: 0.3}``); generation and
            cache do not depend on it.

    Returns:
        The benchmark; without ``partition``, client ``m`` has ``task="vqa"`` and
        ``modality=m``.
    """
    mods = tuple(str(m) for m in modalities)
    if not mods or len(set(mods)) != len(mods):
        raise ValueError(f"modalities must be distinct and non-empty, got {list(mods)}")
    for m in mods:
        client_spec(m)  # validates the name
    sizes = resolve_sizes(train_sizes, [(m, "vqa") for m in mods], {"vqa": DEFAULT_TRAIN_SIZE})
    if seed < 0 or image_size < 16 or public_size < 0 or test_size < 0 or min(sizes.values()) < 0:
        raise ValueError("seed and sizes must be non-negative and image_size at least 16")
    args = {
        "seed": int(seed),
        "image_size": int(image_size),
        "public_size": int(public_size),
        "train_sizes": sizes,
        "test_size": int(test_size),
        "modalities": list(mods),
    }

    def _build() -> tuple[SynthBenchmark, np.ndarray]:
        return build(int(seed), int(image_size), int(public_size), sizes, int(test_size), mods)

    def _decode(payload: dict[str, Any], images: np.ndarray) -> SynthBenchmark:
        return from_payload(payload, images)  # type: ignore[return-value]

    bench = cache.load_or_build(cache_dir, NAME, args, VERSION, _build, to_payload, _decode)
    return finish_synthetic(bench, partition)
