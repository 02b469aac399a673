"""On-disk cache of a generated benchmark: one image array, one sample JSON, one manifest.

Shared by every synthetic benchmark (``fedmed_synth``, ``crossmodal_synth``, ``fedvqa_synth``).
Layout under ``<cache_dir>/<name>/<key>/``: ``images.npy`` (N x H x W x 3 uint8),
``samples.json`` (samples referring to rows of the array) and ``manifest.json`` (generator
version, arguments and SHA-256 of both files). The manifest is written last, so a crash half
way leaves a cache whose checksums fail, which is then rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_WARN = "benchmark cache: %s %s; rebuilding"

# The default generator version (fedmed_synth's). Each generator passes its own version: bump
# it whenever generated content changes, so stale caches are never reused.
GENERATOR_VERSION = 1
IMAGES, SAMPLES, MANIFEST = "images.npy", "samples.json", "manifest.json"


def cache_key(args: dict[str, Any], version: int = GENERATOR_VERSION) -> str:
    """A short hash of the generator version and every argument that shapes the data."""
    blob = json.dumps({"version": version, **args}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, write) -> None:
    """Write through ``write(handle)`` into a temp file beside ``path``, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(
    directory: Path,
    images: np.ndarray,
    payload: dict[str, Any],
    args: dict[str, Any],
    version: int = GENERATOR_VERSION,
) -> None:
    """Write the cache atomically, file by file, manifest last."""
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / IMAGES, lambda h: np.save(h, images, allow_pickle=False))
    _atomic_write(directory / SAMPLES, lambda h: h.write(json.dumps(payload).encode()))
    manifest = {
        "version": version,
        "args": args,
        "num_images": int(images.shape[0]),
        "files": {name: _sha256(directory / name) for name in (IMAGES, SAMPLES)},
    }
    _atomic_write(directory / MANIFEST, lambda h: h.write(json.dumps(manifest, indent=1).encode()))


def load(
    directory: Path, version: int = GENERATOR_VERSION
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Read a valid cache, or return ``None`` after a warning naming the faulty file.

    A directory that does not exist is a plain miss (no warning): nothing was cached yet.
    """
    if not directory.exists():
        return None
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if manifest["version"] != version:
            raise ValueError(f"version {manifest['version']} != {version}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning(_WARN, manifest_path, f"is missing or invalid ({err})")
        return None
    for name in (IMAGES, SAMPLES):
        path = directory / name
        if not path.exists() or _sha256(path) != files.get(name):
            log.warning(_WARN, path, "is missing or fails its checksum")
            return None
    try:
        images = np.load(directory / IMAGES, allow_pickle=False)
    except (OSError, ValueError) as err:
        log.warning(_WARN, directory / IMAGES, f"is unreadable ({err})")
        return None
    try:
        payload = json.loads((directory / SAMPLES).read_text())
    except (OSError, ValueError) as err:
        log.warning(_WARN, directory / SAMPLES, f"is unreadable ({err})")
        return None
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) != manifest.get("num_images"):
        log.warning(_WARN, directory / IMAGES, f"has shape {images.shape} {images.dtype}")
        return None
    return images, payload


# Samples <-> JSON. A sample's image is a row of the image array; its scene record (meta
# "scene", any object with ``to_dict``) is stored as a dict and rebuilt by ``scene_from_dict``.


def encode_sample(sample: Any, row: int) -> dict[str, Any]:
    """The JSON form of one generated sample whose image is row ``row`` of the array."""
    meta = dict(sample.meta)
    if "scene" in meta:
        meta["scene"] = meta["scene"].to_dict()
    return {
        "image": row,
        "modality": sample.modality,
        "question": sample.question,
        "answer": sample.answer,
        "task": sample.task,
        "answer_type": sample.answer_type,
        "box": list(sample.box) if sample.box is not None else None,
        "meta": meta,
    }


def decode_sample(
    data: dict[str, Any], images: np.ndarray, scene_from_dict: Callable[[dict], Any] | None
) -> Any:
    """Invert :func:`encode_sample`; raises ``KeyError``/``IndexError``/``TypeError`` on damage."""
    from fedmllm.data.schema import Sample

    meta = dict(data["meta"])
    if "scene" in meta and scene_from_dict is not None:
        meta["scene"] = scene_from_dict(meta["scene"])
    box = tuple(data["box"]) if data["box"] is not None else None
    return Sample(
        images[data["image"]],
        data["modality"],
        data["question"],
        data["answer"],
        data["task"],
        data["answer_type"],
        box,
        meta,
    )


def load_or_build(
    cache_dir: str | Path | None,
    name: str,
    args: dict[str, Any],
    version: int,
    build: Callable[[], tuple[Any, np.ndarray]],
    to_payload: Callable[[Any], dict[str, Any]],
    from_payload: Callable[[dict[str, Any], np.ndarray], Any],
) -> Any:
    """The cached object under ``<cache_dir>/<name>/<key>/``, built and cached on a miss.

    Args:
        cache_dir: Cache root; ``None`` builds in memory without caching.
        name: Benchmark name (first directory level).
        args: Every argument that shapes the data (hashed into the key, stored in the manifest).
        version: Generator version (bump when generated content changes).
        build: Builds ``(object, images)``; every sample image must be a row of ``images``.
        to_payload: The JSON side of the object (samples refer to image rows).
        from_payload: Inverts ``to_payload`` given the image array.

    Returns:
        The loaded or freshly built object.
    """
    if cache_dir is None:
        return build()[0]
    directory = Path(cache_dir) / name / cache_key(args, version)
    cached = load(directory, version)
    if cached is not None:
        try:
            return from_payload(cached[1], cached[0])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            log.warning(_WARN, directory / SAMPLES, f"does not decode ({err})")
    obj, images = build()
    save(directory, images, to_payload(obj), args, version)
    log.info("%s: generated %d images into %s", name, len(images), directory)
    return obj
