"""Benchmarks over real datasets, composed from config: ``fedmed``, ``fedvqa``, your own.

A benchmark is a list of clients, each fed by one or more **sources** (a reader, a folder
under ``data_dir``, which split is train and which is test, and reader options). For every
client the source pools are read, answers may be restricted to each source's most frequent
classes (FedDAT's top-100 for Fed-VQA), train and test are sampled to the configured sizes
with the benchmark seed, a **public split** for pretraining the tiny model is drawn from the
train records no client received (so it is disjoint from every client), the partition is
applied, and the selected records are validated (``skip_invalid``). The vocabulary is built
from every text, so the tiny model's word tokenizer covers them.

Sampling: ``exact`` draws exactly ``size`` records (all when fewer exist); ``bernoulli`` keeps
each record with probability ``size / N``, as FedDAT built Fed-VQA (expected size ``size``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fedmllm.data.benchmark import Benchmark, apply_partition, resolve_sizes, validate_benchmark
from fedmllm.data.readers.glue import read_glue
from fedmllm.data.readers.llava import read_llava
from fedmllm.data.readers.medvqa import read_pathvqa, read_slake, read_vqa_rad
from fedmllm.data.readers.mimic import read_mimic_cxr, read_r2gen
from fedmllm.data.readers.radgenome import read_radgenome
from fedmllm.data.readers.vqa_sources import (
    read_aqua,
    read_cocoqa,
    read_gqa,
    read_vizwiz,
    read_vqa_abstract,
)
from fedmllm.data.schema import TASKS, ClientData, Sample

log = logging.getLogger(__name__)

READERS: dict[str, Callable[..., list[Sample]]] = {
    "slake": read_slake,
    "vqa_rad": read_vqa_rad,
    "pathvqa": read_pathvqa,
    "glue": read_glue,
    "mimic_cxr": read_mimic_cxr,
    "r2gen": read_r2gen,
    "radgenome": read_radgenome,
    "aqua": read_aqua,
    "gqa": read_gqa,
    "vizwiz": read_vizwiz,
    "vqa_abstract": read_vqa_abstract,
    "cocoqa": read_cocoqa,
    "llava": lambda root, split, **kw: read_llava_split(root, split, **kw),
}
SAMPLING = ("exact", "bernoulli")


def read_llava_split(
    root: str | Path, split: str, image_folder: str | None = None, **options: Any
) -> list[Sample]:
    """A LLaVA source: ``split`` is the JSON file relative to ``root`` (e.g.
    ``train/client_1.json``), ``image_folder`` the image folder relative to ``root``."""
    root = Path(root)
    folder = root / image_folder if image_folder is not None else None
    return read_llava(root / split, folder, dataset=f"llava:{Path(split).stem}", **options)


def discover_llava_clients(
    data_dir: str | Path, root: str, image_folder: str = "image", task: str = "vqa"
) -> dict[str, Any]:
    """Client specs for a FedVLMBench-style folder: ``train/client_<i>.json`` paired with
    ``test/client_<i>.json``, images under ``image/``.

    Raises:
        DatasetNotFoundError: When the folder has no ``train/client_*.json``.
    """
    from fedmllm.data.readers.common import DatasetNotFoundError

    base = Path(data_dir) / root
    files = sorted((base / "train").glob("client_*.json"))
    if not files:
        raise DatasetNotFoundError(
            f"llava: expected client files {base / 'train' / 'client_<i>.json'} (with "
            f"{base / 'test' / 'client_<i>.json'}) but found none. See docs/data.md "
            "(section 'llava') for the layout."
        )
    clients = {}
    for f in files:
        source = {"reader": "llava", "root": root, "train": f"train/{f.name}"}
        source.update(test=f"test/{f.name}", options={"image_folder": image_folder, "task": task})
        clients[f.stem] = {"task": task, "sources": [source]}
    return clients


def text_vocabulary(samples: list[Sample]) -> list[str]:
    """Every lower-cased whitespace-separated chunk of every question and answer.

    The tiny model's tokenizer splits each vocabulary entry with its own pre-tokenizer
    (punctuation, single digits), so whole chunks give exactly the pieces it will meet in
    the texts, whatever characters they hold.
    """
    return sorted({w for s in samples for t in (s.question, s.answer) for w in t.lower().split()})


def _read_source(data_dir: Path, source: Mapping[str, Any], split_key: str) -> list[Sample]:
    name = str(source["reader"])
    if name not in READERS:
        raise ValueError(f"unknown reader {name!r}; use one of {sorted(READERS)}")
    root = data_dir / str(source.get("root", name))
    split = source.get(split_key, split_key)
    return READERS[name](root, split, **dict(source.get("options") or {}))


def top_answers(train: list[Sample], test: list[Sample], k: int) -> tuple[list, list]:
    """Keep records whose answer is among the ``k`` most frequent training answers."""
    counts = Counter(s.answer.lower() for s in train)
    keep = {a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]}
    return [s for s in train if s.answer.lower() in keep], [
        s for s in test if s.answer.lower() in keep
    ]


def draw(samples: list[Sample], size: int, rng: np.random.Generator, sampling: str) -> np.ndarray:
    """Indices of the records kept for a split of ``size`` (see the module docstring)."""
    n = len(samples)
    if size < 0:
        return np.arange(n)
    if sampling == "bernoulli":
        return np.flatnonzero(rng.random(n) < min(1.0, size / n)) if n else np.zeros(0, int)
    if size >= n:
        if size > n:
            log.warning("asked for %d records but only %d exist; using all", size, n)
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _client_pools(
    data_dir: Path, spec: Mapping[str, Any], top_k: int | None
) -> tuple[list[Sample], list[Sample]]:
    """A client's train and test pools over its sources (top-k answers per source)."""
    train, test = [], []
    for source in spec["sources"]:
        tr, te = _read_source(data_dir, source, "train"), _read_source(data_dir, source, "test")
        if top_k is not None:
            tr, te = top_answers(tr, te, int(top_k))
        train += tr
        test += te
    return train, test


def load_real_benchmark(
    name: str,
    data_dir: str | Path,
    clients: Mapping[str, Any] | str,
    train_sizes: Mapping[str, int] | None = None,
    test_size: int | None = 200,
    public_size: int = 0,
    sampling: str = "exact",
    top_answers_k: int | None = None,
    seed: int = 0,
    partition: Mapping[str, Any] | None = None,
    skip_invalid: bool = False,
    val_size: int = 0,
) -> Benchmark:
    """Compose a benchmark of real datasets as configured (see ``configs/benchmark/fedmed.yaml``).

    Args:
        name: Benchmark name.
        data_dir: Root the sources' ``root`` folders are relative to.
        clients: ``client_id -> {task, modality (optional), sources: [{reader, root, train,
            test, options}]}``, or ``"discover:<folder>"`` for a FedVLMBench-style folder of
            LLaVA files (``train/client_<i>.json`` + ``test/client_<i>.json``).
        train_sizes: Train records per client, keyed by client id or task (missing or -1:
            all records).
        test_size: Test records per client (``None`` or -1: all).
        public_size: Records of the public split (pretraining the tiny model), drawn evenly
            over clients from train records no client received; 0 for a pretrained model.
        sampling: ``exact`` or ``bernoulli``.
        top_answers_k: Keep only each source's ``k`` most frequent training answers (VQA).
        seed: Seed of every draw.
        partition: Optional re-partition of the clients (``fedmllm.data.partition``).
        skip_invalid: Skip and count invalid records instead of failing on the first.
        val_size: Validation records per client, carved from the train records no client
            received, after the public split's share (so neither training nor pretraining
            data changes); 0: none. For datasets that ship no validation split.

    Returns:
        The benchmark, with ``validation`` counts and a vocabulary built from its texts.
    """
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if isinstance(clients, str):  # "discover:<folder>" -> a FedVLMBench-style LLaVA folder
        if not clients.startswith("discover:"):
            raise ValueError(f"{name}: clients must be a mapping or 'discover:<folder>'")
        clients = discover_llava_clients(data_dir, clients.split(":", 1)[1])
    specs = {str(k): dict(v) for k, v in clients.items()}
    for cid, spec in specs.items():
        if spec.get("task") not in TASKS or not spec.get("sources"):
            raise ValueError(f"{name}: client {cid!r} needs a task in {TASKS} and sources")
    # -1 (or a null size) keeps every record.
    pairs = [(c, s["task"]) for c, s in specs.items()]
    sizes = resolve_sizes(train_sizes, pairs, dict.fromkeys(TASKS, -1))
    test_size = -1 if test_size is None else int(test_size)
    rng = np.random.default_rng(seed)
    out, leftovers = [], []
    for cid, spec in specs.items():
        train, test = _client_pools(Path(data_dir), spec, top_answers_k)
        picked = draw(train, sizes[cid], rng, sampling)
        rest = np.setdiff1d(np.arange(len(train)), picked)
        leftovers.append([train[i] for i in rng.permutation(rest)])
        test_kept = [test[i] for i in draw(test, test_size, rng, sampling)]
        chosen = [train[i] for i in picked]
        modality = spec.get("modality") or _modality(chosen + test_kept)
        out.append(ClientData(cid, spec["task"], modality, chosen, test_kept))
    public = _public(leftovers, public_size)
    if val_size < 0:
        raise ValueError(f"benchmark.val_size must be >= 0, got {val_size}")
    for client, pool, n in zip(out, leftovers, _shares(public_size, len(leftovers)), strict=True):
        client.val = [replace(s, meta={**s.meta, "split": "val"}) for s in pool[n : n + val_size]]
        if len(client.val) < val_size:
            log.warning(
                "client %s: only %d of %d validation records left over after sampling",
                client.client_id,
                len(client.val),
                val_size,
            )
    bench = Benchmark(name, public, out)
    bench = validate_benchmark(apply_partition(bench, partition), skip_invalid)
    bench.words = text_vocabulary(bench.all_samples())
    return bench


def _modality(samples: list[Sample]) -> str:
    mods = {s.modality for s in samples}
    return mods.pop() if len(mods) == 1 else "mixed"


def _public(leftovers: list[list[Sample]], size: int) -> list[Sample]:
    """Up to ``size`` records, evenly over the clients' unused train records."""
    public: list[Sample] = []
    for pool, n in zip(leftovers, _shares(size, len(leftovers)), strict=True):
        public += [_as_public(s) for s in pool[:n]]
    if len(public) < size:
        log.warning(
            "public split: only %d of %d records left over after sampling", len(public), size
        )
    return public


def _shares(size: int, k: int) -> list[int]:
    """The public split's records per client: ``size`` spread evenly over ``k`` clients."""
    return [size // k + (i < size % k) for i in range(k)]


def _as_public(sample: Sample) -> Sample:
    return replace(sample, meta={**sample.meta, "split": "public"})
