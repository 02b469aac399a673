"""``unimodal_mix_synth``: UniFLoW's mixed-modality federation on CPU.

Clients of four kinds share one LLM:

- ``image``: ``crossmodal_synth`` VQA of one imaging modality (``ct`` first, then ``mri``...);
- ``audio``: audio QA about synthetic sound scenes (:mod:`.clips`), no image;
- ``both``: an image *and* a sound clip per sample; half of the questions ask about the sound,
  half about the image (the model must use the right input);
- ``text``: ``crossmodal_text_synth``'s text-only client (findings + question).

``clients`` gives the count of each kind (``{audio: 3}`` is an audio-only federation); ids are
the kind, numbered when a kind has several clients. The public split (for pretraining the tiny
model that hears) is ``fedmed_synth``'s, with ``audio_public_size`` sound-scene questions added
and the first ``both_public_size`` public VQA samples given a clip (half of them re-asked about
the sound). Each sample's meta ``asks`` says which input holds the answer (``image``,
``audio``, ``text``): the mixed-modality table's image / audio columns.

The image side is ``crossmodal_synth``'s cache; the clips are cached under
``<cache_dir>/unimodal_mix_synth/<key>/`` (``audio.npy``, int16 rows in generation order,
with a checksummed manifest). Waveforms are quantised to 16 bits when generated, so a cached
and a fresh build are identical.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fedmllm.data import cache
from fedmllm.data.benchmark import Benchmark, resolve_sizes, validate_benchmark
from fedmllm.data.schema import ClientData, Sample
from fedmllm.data.synthaudio.clips import audio_question, audio_words, draw_scene, synthesize
from fedmllm.data.synthmed.crossmodal import load_crossmodal_synth
from fedmllm.data.synthmed.scene import MODALITIES
from fedmllm.data.synthmed.text_only import text_client

log = logging.getLogger(__name__)
NAME = "unimodal_mix_synth"
VERSION = 1
KINDS = ("image", "audio", "both", "text")
DEFAULT_TRAIN_SIZE = 300
# Streams of the sound scenes, far from fedmed/crossmodal/text (0-6, 100-107, 200).
_PUBLIC_STREAM, _BOTH_PUBLIC_STREAM, _CLIENT_BASE = 300, 301, 310
AUDIO_FILE = "audio.npy"


def client_ids(clients: Mapping[str, int]) -> list[tuple[str, str]]:
    """``(client id, kind)`` in kind order; a kind with several clients numbers them."""
    unknown = sorted(set(clients) - set(KINDS))
    if unknown:
        raise ValueError(f"benchmark.clients has unknown kinds {unknown}; use {list(KINDS)}")
    out = []
    for kind in KINDS:
        n = int(clients.get(kind, 0))
        if n < 0:
            raise ValueError(f"benchmark.clients.{kind} must be >= 0, got {n}")
        out += [(kind if n == 1 else f"{kind}{i + 1}", kind) for i in range(n)]
    if not out:
        raise ValueError("benchmark.clients names no client; e.g. {image: 1, audio: 1}")
    if sum(k in ("image", "both") for _, k in out) > len(MODALITIES):
        raise ValueError(
            f"at most {len(MODALITIES)} image and both clients together (one imaging modality "
            "each); lower benchmark.clients.image or benchmark.clients.both"
        )
    return out


class _Clips:
    """Hands out sound clips: synthesised (quantised to 16 bits) or rows of a cached array."""

    def __init__(self, rows: np.ndarray | None, sample_rate: int, seconds: float) -> None:
        self.rows, self.sample_rate, self.seconds = rows, sample_rate, seconds
        self.made: list[np.ndarray] = []

    def __call__(self, scene: Any, rng: np.random.Generator) -> np.ndarray:
        i = len(self.made)
        if self.rows is None:
            wave = synthesize(scene, rng, self.sample_rate, self.seconds)
            q = np.round(wave * 32767).astype(np.int16)
        else:
            q = self.rows[i]
        self.made.append(q)
        return q.astype(np.float32) / 32767


def _audio_sample(
    clips: _Clips, seed: int, stream: int, index: int, split: str, base: Sample | None = None
) -> Sample:
    """An audio-QA sample (``base`` None) or ``base`` with a clip attached, re-asked about the
    sound with probability 1/2."""
    rng = np.random.default_rng([seed, stream, index])
    scene = draw_scene(rng)
    wave = clips(scene, rng)
    ask_audio = base is None or bool(rng.random() < 0.5)
    kind, question, answer, answer_type = audio_question(rng, scene)
    meta = {"source": NAME, "sound": scene.to_dict(), "split": split}
    if base is None:
        meta.update(asks="audio", qtype=kind)
        return Sample(None, "audio", question, answer, "vqa", answer_type, meta=meta, audio=wave)
    meta = {**base.meta, **meta, "image_modality": base.modality}
    if ask_audio:
        meta.update(asks="audio", qtype=kind)
        return replace(
            base, modality="image_audio", question=question, answer=answer,
            answer_type=answer_type, meta=meta, audio=wave,
        )  # fmt: skip
    meta.update(asks="image")
    return replace(base, modality="image_audio", meta=meta, audio=wave)


def _build(
    clips: _Clips,
    seed: int,
    ids: list[tuple[str, str]],
    sizes: dict[str, int],
    test_size: int,
    images: Benchmark,
    image_of: dict[str, str],
    audio_public_size: int,
    both_public_size: int,
) -> tuple[list[Sample], list[ClientData]]:
    """Public split and clients; every clip comes from ``clips`` in one fixed order."""
    public = list(images.public)
    vqa_rows = [i for i, s in enumerate(public) if s.task == "vqa"][:both_public_size]
    for j, row in enumerate(vqa_rows):
        public[row] = _audio_sample(clips, seed, _BOTH_PUBLIC_STREAM, j, "public", public[row])
    public += [
        _audio_sample(clips, seed, _PUBLIC_STREAM, i, "public") for i in range(audio_public_size)
    ]
    by_id = {c.client_id: c for c in images.clients}
    clients = []
    for k, (cid, kind) in enumerate(ids):
        stream = _CLIENT_BASE + 2 * k
        if kind == "text":
            clients.append(replace(text_client(seed, sizes[cid], test_size), client_id=cid))
            continue
        if kind == "image":
            clients.append(replace(by_id[image_of[cid]], client_id=cid))
            continue
        split_samples = []
        for split, off, n in (("train", 0, sizes[cid]), ("test", 1, test_size)):
            bases = getattr(by_id[image_of[cid]], split) if kind == "both" else [None] * n
            split_samples.append(
                [_audio_sample(clips, seed, stream + off, i, split, b) for i, b in enumerate(bases)]
            )
        modality = "image_audio" if kind == "both" else "audio"
        clients.append(ClientData(cid, "vqa", modality, *split_samples))
    return public, clients


def _cached_rows(directory: Path) -> np.ndarray | None:
    """The cached clips, or None (a warning names a damaged file)."""
    manifest_path, path = directory / cache.MANIFEST, directory / AUDIO_FILE
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest["version"] != VERSION or cache._sha256(path) != manifest["sha256"]:
            raise ValueError("version or checksum differs")
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, KeyError) as err:
        log.warning("%s: audio cache %s unusable (%s); rebuilding", NAME, directory, err)
        return None


def _save_rows(directory: Path, rows: np.ndarray, args: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    cache._atomic_write(directory / AUDIO_FILE, lambda h: np.save(h, rows, allow_pickle=False))
    manifest = {"version": VERSION, "args": args, "sha256": cache._sha256(directory / AUDIO_FILE)}
    cache._atomic_write(
        directory / cache.MANIFEST, lambda h: h.write(json.dumps(manifest).encode())
    )


def load_unimodal_mix_synth(
    cache_dir: str | Path | None = "data",
    seed: int = 0,
    clients: Mapping[str, int] | None = None,
    train_sizes: Mapping[str, int] | None = None,
    test_size: int = 100,
    audio_public_size: int | None = None,
    both_public_size: int | None = None,
    sample_rate: int = 8000,
    clip_seconds: float = 1.0,
    **images: Any,
) -> Benchmark:
    """The mixed-modality benchmark (see the module docstring).

    Args:
        cache_dir: Cache root (image side: ``crossmodal_synth``'s; clips: this benchmark's).
        seed: Non-negative seed of every split.
        clients: Count per kind (``image``, ``audio``, ``both``, ``text``); default one each.
        train_sizes: Keyed by ``vqa`` (every client) or by client id; default 300.
        test_size: Test samples per client.
        audio_public_size: Sound-scene questions added to the public split (None: half the
            image side's ``public_size``).
        both_public_size: Public VQA samples that get a clip, half re-asked about the sound
            (None: a quarter of ``public_size``).
        sample_rate: Clip sample rate (must match ``model.audio.sample_rate``).
        clip_seconds: Clip length.
        **images: ``image_size`` and ``public_size`` of the image side.

    Returns:
        The benchmark; its vocabulary adds the audio questions' words.
    """
    ids = client_ids(dict(clients or dict.fromkeys(KINDS, 1)))
    public_size = int(images.get("public_size", 4000))
    audio_public_size = public_size // 2 if audio_public_size is None else audio_public_size
    both_public_size = public_size // 4 if both_public_size is None else both_public_size
    sizes = resolve_sizes(
        train_sizes, [(cid, "vqa") for cid, _ in ids], {"vqa": DEFAULT_TRAIN_SIZE}
    )
    holders = [cid for cid, kind in ids if kind in ("image", "both")]
    image_of = {cid: MODALITIES[i] for i, cid in enumerate(holders)}
    mods = list(image_of.values()) or [MODALITIES[0]]
    image_sizes = {image_of[c]: sizes[c] for c in holders} or {MODALITIES[0]: 1}
    bench = load_crossmodal_synth(
        cache_dir, seed=seed, train_sizes=image_sizes, test_size=test_size if holders else 1,
        modalities=mods, **images,
    )  # fmt: skip
    args = {
        "seed": int(seed), "ids": ids, "sizes": sizes, "test_size": int(test_size),
        "audio_public_size": int(audio_public_size), "both_public_size": int(both_public_size),
        "sample_rate": int(sample_rate), "clip_seconds": float(clip_seconds),
        "images": {k: images[k] for k in sorted(images)}, "image_of": image_of,
    }  # fmt: skip
    directory = Path(cache_dir) / NAME / cache.cache_key(args, VERSION) if cache_dir else None
    rows = _cached_rows(directory) if directory is not None else None

    def make(rows: np.ndarray | None) -> tuple[_Clips, tuple[list[Sample], list[ClientData]]]:
        clips = _Clips(rows, int(sample_rate), float(clip_seconds))
        built = _build(
            clips, int(seed), ids, sizes, int(test_size), bench, image_of,
            int(audio_public_size), int(both_public_size),
        )  # fmt: skip
        return clips, built

    try:
        clips, (public, out) = make(rows)
    except IndexError:  # a cache with too few rows
        rows = None
        clips, (public, out) = make(None)
    if rows is None and directory is not None and clips.made:
        _save_rows(directory, np.stack(clips.made), args)
    words = sorted(set(bench.vocabulary()) | set(audio_words()))
    return validate_benchmark(Benchmark(NAME, public, out, words=words))
