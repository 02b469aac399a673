"""On-disk cache of a generated benchmark: one image array, one sample JSON, one manifest.

Layout under ``<cache_dir>/fedmed_synth/<key>/``: ``images.npy`` (N x H x W x 3 uint8),
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
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_WARN = "fedmed_synth cache: %s %s; rebuilding"

# Bump whenever generated content changes, so stale caches are never reused.
GENERATOR_VERSION = 1
IMAGES, SAMPLES, MANIFEST = "images.npy", "samples.json", "manifest.json"


def cache_key(args: dict[str, Any]) -> str:
    """A short hash of the generator version and every argument that shapes the data."""
    blob = json.dumps({"version": GENERATOR_VERSION, **args}, sort_keys=True)
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
    directory: Path, images: np.ndarray, payload: dict[str, Any], args: dict[str, Any]
) -> None:
    """Write the cache atomically, file by file, manifest last."""
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / IMAGES, lambda h: np.save(h, images, allow_pickle=False))
    _atomic_write(directory / SAMPLES, lambda h: h.write(json.dumps(payload).encode()))
    manifest = {
        "version": GENERATOR_VERSION,
        "args": args,
        "num_images": int(images.shape[0]),
        "files": {name: _sha256(directory / name) for name in (IMAGES, SAMPLES)},
    }
    _atomic_write(directory / MANIFEST, lambda h: h.write(json.dumps(manifest, indent=1).encode()))


def load(directory: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Read a valid cache, or return ``None`` after a warning naming the faulty file.

    A directory that does not exist is a plain miss (no warning): nothing was cached yet.
    """
    if not directory.exists():
        return None
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if manifest["version"] != GENERATOR_VERSION:
            raise ValueError(f"version {manifest['version']} != {GENERATOR_VERSION}")
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
