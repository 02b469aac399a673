"""Full-parameter pretraining of the tiny model on a benchmark's public split.

A from-scratch model must first learn to see and to speak the answer formats before adapters
make sense. Pretraining is plain AdamW with linear warmup and cosine decay. The learning rate
matters. Measured on fedmed_synth's public split (4,000 samples, default tiny model, 1,500
steps of 32): final training loss 0.29 at lr 5e-4, 0.30-0.31 at 3e-4 and 1e-3, 0.37 at 2e-3
(warmup and clipping keep 2e-3 from stalling outright, but it learns worse and grounds worst).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import LlavaForConditionalGeneration, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from fedmllm.data.schema import Sample
from fedmllm.models.progress import ProgressLog, progress_bar
from fedmllm.models.settings import Settings

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PretrainConfig(Settings):
    """Pretraining hyper-parameters.

    Attributes:
        steps: Optimiser steps; 0 keeps the random initialisation.
        batch_size: Samples per step.
        lr: Peak AdamW learning rate.
        warmup: Linear warmup steps.
        min_lr_ratio: Final learning rate of the cosine decay, as a fraction of ``lr``.
        weight_decay: AdamW weight decay.
        grad_clip: Max gradient norm (0 disables clipping).
        seed: Seed of the initialisation and of the batch order.
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0

    section: ClassVar[str] = "pretrain"


@dataclass
class PretrainResult:
    """What pretraining did: per-step losses and wall time."""

    losses: list[float]
    wall_s: float

    @property
    def final_loss(self) -> float:
        """Mean loss over the last 50 steps (NaN when no step ran)."""
        tail = self.losses[-50:]
        return sum(tail) / len(tail) if tail else math.nan


def lr_multiplier(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to 1, then cosine decay to ``min_lr_ratio`` at ``cfg.steps``."""
    if cfg.warmup > 0 and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine


def batch_indices(
    samples: Sequence[Sample], batch_size: int, generator: torch.Generator
) -> Iterator[list[int]]:
    """Endless shuffled batches of indices; a batch holds one kind (image / text / audio / both).

    Each epoch shuffles each pool, cuts it into batches (the last one may be short), and
    shuffles the order of the batches.
    """
    # Pools by (image?, audio?): without audio, exactly the image / text-only pools.
    kinds = [(s.image is not None, getattr(s, "audio", None) is not None) for s in samples]
    order = [(True, False), (False, False), (False, True), (True, True)]
    pools = [[i for i, k in enumerate(kinds) if k == kind] for kind in order]
    pools = [p for p in pools if p]
    if not pools:
        raise ValueError("cannot pretrain on an empty sample list")
    while True:
        batches: list[list[int]] = []
        for pool in pools:
            order = torch.randperm(len(pool), generator=generator).tolist()
            batches.extend(
                [pool[j] for j in order[k : k + batch_size]]
                for k in range(0, len(pool), batch_size)
            )
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[b]


def pretrain(
    model: torch.nn.Module,
    collator: Callable[[Sequence[Sample]], dict[str, Any]],
    samples: Sequence[Sample],
    cfg: PretrainConfig,
    progress: bool = True,
) -> PretrainResult:
    """Train every parameter of ``model`` on ``samples``.

    The batch order is seeded with ``cfg.seed``; seed the initialisation before building the
    model. Thread count is the caller's business (``torch.set_num_threads``). Start, progress
    (about every 10 % of the steps), slow steps and end are logged (:class:`ProgressLog`).

    Args:
        model: A model whose forward takes the collator's batch and returns ``.loss``.
        collator: A training collator (labels supervise answers only).
        samples: The public split.
        cfg: Hyper-parameters.
        progress: Show a rich progress bar with the running loss (the log lines come anyway).

    Returns:
        Per-step losses and wall time; ``model`` is left in eval mode.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, cfg))
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = batch_indices(samples, cfg.batch_size, generator)
    losses: list[float] = []
    start = time.perf_counter()
    report = ProgressLog(log, "pretraining", cfg.steps)
    report.begin(
        f"batch {cfg.batch_size}, {len(samples)} samples, lr {cfg.lr:g}, "
        f"{torch.get_num_threads()} torch thread(s)"
    )
    model.train()
    with progress_bar("pretrain", progress) as bar:
        task = bar.add_task("pretrain", total=cfg.steps, loss=math.nan)
        for step in range(1, cfg.steps + 1):
            step_start = time.perf_counter()
            batch = collator([samples[i] for i in next(batches)])
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            # A running mean reads better than the noisy per-batch loss.
            running = sum(losses[-20:]) / len(losses[-20:])
            bar.update(task, advance=1, loss=running)
            report.step(step, running, time.perf_counter() - step_start)
    model.eval()
    result = PretrainResult(losses=losses, wall_s=time.perf_counter() - start)
    report.end(result.final_loss)
    return result


# ---------------------------------------------------------------------------------------------
# Cache: <cache_dir>/models/tiny_vlm-<hash>/ holding save_pretrained files and a manifest.


class CacheError(RuntimeError):
    """A cached model directory is missing, incomplete or corrupt."""


def data_fingerprint(samples: Sequence[Sample]) -> str:
    """SHA-256 over the samples' texts, labels and image bytes (file bytes for paths)."""
    h = hashlib.sha256()
    for s in samples:
        fields_ = [s.modality, s.question, s.answer, s.task, s.answer_type, s.box]
        h.update(json.dumps(fields_, default=str).encode())
        if isinstance(s.image, np.ndarray):
            h.update(f"{s.image.shape}{s.image.dtype}".encode())
            h.update(np.ascontiguousarray(s.image).tobytes())
        elif s.image is not None:
            h.update(Path(s.image).read_bytes())
        else:
            h.update(b"<no image>")
        audio = getattr(s, "audio", None)
        if isinstance(audio, np.ndarray):  # (no bytes for audio-free samples: old hashes hold)
            h.update(b"<audio>" + np.ascontiguousarray(audio).tobytes())
        elif audio is not None:
            h.update(b"<audio>" + Path(audio).read_bytes())
    return h.hexdigest()


def cache_hash(key: dict[str, Any]) -> str:
    """Short stable hash of a JSON-able cache key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _quiet_hf() -> Iterator[None]:
    """Hide transformers' per-call save/load progress bars (restored afterwards)."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_cached(
    directory: Path, expected_hash: str, model_class: type | None = None
) -> tuple[LlavaForConditionalGeneration, PreTrainedTokenizerFast, dict]:
    """Load a cached model (of ``model_class``, default LLaVA), tokeniser and manifest.

    Raises:
        CacheError: Naming the problem: no manifest, a hash mismatch, a file whose checksum
            differs from the manifest's, or a loader that raised.
    """
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CacheError(f"{directory}: no {MANIFEST} (an interrupted build?)")
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("hash") != expected_hash:
            raise CacheError(f"{manifest_path}: hash {manifest.get('hash')!r} != {expected_hash!r}")
        # Checksums catch corruption that would still load (flipped bytes inside a tensor).
        for name, digest in manifest["files"].items():
            if _sha256(directory / name) != digest:
                raise CacheError(f"{directory / name}: checksum differs from the manifest")
        with _quiet_hf():
            model = (model_class or LlavaForConditionalGeneration).from_pretrained(directory)
            tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    except CacheError:
        raise
    except Exception as exc:  # any loader failure means: rebuild
        raise CacheError(f"{directory}: {type(exc).__name__}: {exc}") from exc
    return model.eval(), tokenizer, manifest


def save_cached(
    directory: Path,
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    manifest: dict[str, Any],
) -> None:
    """Write model, tokeniser and (last) manifest into a temp dir, then rename it into place.

    A reader therefore sees either no directory or a complete one. A stale or corrupt
    directory at ``directory`` is replaced.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with _quiet_hf():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps({**manifest, "files": files}, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        try:
            os.replace(tmp, directory)
        except OSError:
            # Another process finished the same build first; its copy is as good as ours.
            if not (directory / MANIFEST).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
