"""``crossmodal_xflora_synth``: ``crossmodal_synth`` whose clients also train on translations.

Loading it (1) loads ``crossmodal_synth``, (2) runs the translation federation
(:mod:`.federated`) on the clients' training images, (3) adds to each client's training split
translated copies of its own samples into the other modalities that show the same organ,
tagged with the target modality, and (4) measures the translations with a modality classifier
trained on the public split (:mod:`.quality`). The test splits are untouched.

The trained translator is cached under ``<cache_dir>/crossmodal_xflora_synth/<hash>/`` (the
hash covers every argument), with ``translation.json`` (scores, weights, losses per round,
bytes, quality); the translations are recomputed from it, deterministically.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedmllm.data import cache
from fedmllm.data.benchmark import Benchmark
from fedmllm.data.schema import ClientData, Sample
from fedmllm.data.synthmed.anatomy import ORGANS_BY_MODALITY
from fedmllm.data.synthmed.crossmodal import load_crossmodal_synth
from fedmllm.data.synthmed.phrases import MODALITY_WORDS
from fedmllm.data.synthmed.scene import MODALITIES
from fedmllm.translation.augment import translate_samples, translation_items
from fedmllm.translation.federated import TranslationConfig, TranslationResult, train_translation
from fedmllm.translation.models import Translator
from fedmllm.translation.quality import (
    frechet_distance,
    modality_accuracy,
    probe_features,
    train_modality_classifier,
)
from fedmllm.utils.io import torch_save_atomic, write_json

NAME = "crossmodal_xflora_synth"
VERSION = 1
log = logging.getLogger(__name__)


def allowed_targets(modalities: Sequence[str]) -> Any:
    """``sample -> targets``: the other benchmark modalities that show the sample's organ."""

    def targets_of(sample: Sample) -> tuple[str, ...]:
        scene = sample.meta.get("scene")
        organ = getattr(scene, "organ", None)
        return tuple(
            m for m in modalities
            if m != sample.modality and organ in ORGANS_BY_MODALITY.get(m, ())
        )  # fmt: skip

    return targets_of


def _plain(value: Any) -> Any:
    """Mappings and sequences (Hydra nodes included) as dicts and lists, for the cache key."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def answer_for(sample: Sample, target: str) -> str:
    """The answer of a translated copy: a modality question now has the target's answer."""
    if sample.meta.get("qtype") == "modality":
        return MODALITY_WORDS[target]
    return sample.answer


def _train_or_load(
    bench: Benchmark,
    modalities: list[str],
    cfg: TranslationConfig,
    seed: int,
    key_args: dict[str, Any],
    cache_dir: str | Path | None,
) -> tuple[Translator, dict[str, Any]]:
    targets_of = allowed_targets(modalities)
    directory = None
    if cache_dir is not None:
        directory = Path(cache_dir) / NAME / cache.cache_key(key_args, VERSION)
        weights, info = directory / "translator.pt", directory / "translation.json"
        if weights.exists() and info.exists():
            import json

            translator = Translator(modalities, cfg.width, cfg.blocks)
            translator.load_state_dict(torch.load(weights, weights_only=True))
            return translator.eval(), json.loads(info.read_text())
    items = {c.client_id: translation_items(c.train, targets_of) for c in bench.clients}
    start = time.perf_counter()
    result: TranslationResult = train_translation(items, modalities, cfg, seed)
    report = {
        "config": cfg.to_dict(),
        "history": result.history,
        "comm": result.comm,
        "train_s": round(time.perf_counter() - start, 2),
    }
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        torch_save_atomic(result.translator.state_dict(), directory / "translator.pt")
        write_json(directory / "translation.json", report)
    return result.translator, report


def measure_quality(
    bench: Benchmark,
    translated: dict[str, list[Sample]],
    sources: dict[str, list[Sample]],
    modalities: list[str],
    seed: int,
    probe_steps: int = 300,
) -> dict[str, Any]:
    """Probe accuracy on real test images, on translations, and on their untranslated sources
    (labelled with the target), plus Fréchet distances per target modality."""
    public = [
        s for s in bench.public if isinstance(s.image, np.ndarray) and s.modality in modalities
    ]
    probe = train_modality_classifier(
        [s.image for s in public], [s.modality for s in public], modalities, seed, probe_steps
    )
    real_test = [s for c in bench.clients for s in c.test if isinstance(s.image, np.ndarray)]
    fake = [s for c in translated.values() for s in c]
    src = [s for c in sources.values() for s in c]
    out: dict[str, Any] = {
        "probe_real_test_acc": modality_accuracy(
            probe, [s.image for s in real_test], [s.modality for s in real_test], modalities
        ),
        "translated_acc": modality_accuracy(
            probe, [s.image for s in fake], [s.modality for s in fake], modalities
        ),
        "untranslated_acc": modality_accuracy(
            probe, [s.image for s in src], [s.modality for s in fake], modalities
        ),
        "n_translated": len(fake),
        "per_target": {},
    }
    for t in modalities:
        f = [s.image for s in fake if s.modality == t]
        o = [a.image for a, b in zip(src, fake, strict=True) if b.modality == t]
        r = [s.image for s in real_test if s.modality == t]
        row: dict[str, Any] = {
            "n": len(f),
            "translated_acc": modality_accuracy(probe, f, [t] * len(f), modalities),
        }
        if len(f) >= 2 and len(r) >= 2:
            real_feat = probe_features(probe, r)
            row["fd_translated"] = frechet_distance(probe_features(probe, f), real_feat)
            row["fd_untranslated"] = frechet_distance(probe_features(probe, o), real_feat)
        out["per_target"][t] = row
    return out


def load_crossmodal_xflora_synth(
    cache_dir: str | Path | None = "data",
    seed: int = 0,
    translation: dict[str, Any] | None = None,
    translation_fraction: float = 1.0,
    probe_steps: int = 300,
    translation_seed: int | None = None,
    modalities: Sequence[str] = MODALITIES,
    **crossmodal: Any,
) -> Benchmark:
    """``crossmodal_synth`` plus X-FLoRA translations in every client's training split.

    Args:
        cache_dir: Cache root (``None``: no cache).
        seed: Seed of the data (and, by default, of the translation).
        translation: :class:`TranslationConfig` fields (``rounds: 0`` leaves it untrained).
        translation_fraction: Translated copies per client, as a fraction of its real training
            samples (samples without a target modality are skipped).
        probe_steps: Training steps of the modality classifier that measures the translations.
        translation_seed: Seed of the translator, the translation order and the probe (None:
            ``seed``); lets runs share one dataset (``benchmark.seed``) and still vary it.
        modalities: The clients' modalities (``crossmodal_synth``'s option).
        **crossmodal: ``load_crossmodal_synth``'s other arguments (sizes, partition, ...).

    Returns:
        The benchmark named ``crossmodal_xflora_synth``; its attribute ``translation`` holds
        the training history, bytes and quality report.
    """
    cfg = TranslationConfig.from_any(translation)
    t_seed = int(seed if translation_seed is None else translation_seed)
    mods = [str(m) for m in modalities]
    bench = load_crossmodal_synth(cache_dir, seed=seed, modalities=mods, **crossmodal)
    key_args = {
        "seed": int(seed),
        "translation_seed": t_seed,
        "modalities": mods,
        "translation": cfg.to_dict(),
        "crossmodal": _plain({k: v for k, v in crossmodal.items() if k != "partition"}),
        "partition": _plain(crossmodal.get("partition")),
    }
    translator, report = _train_or_load(bench, mods, cfg, t_seed, key_args, cache_dir)
    targets_of = allowed_targets(mods)
    clients, translated, sources = [], {}, {}
    for k, c in enumerate(bench.clients):
        pairs = translate_samples(
            translator, c.train, targets_of, answer_for, translation_fraction, t_seed * 1000 + k
        )
        extra = [copy for _src, copy in pairs]
        translated[c.client_id] = extra
        sources[c.client_id] = [src for src, _copy in pairs]
        clients.append(ClientData(c.client_id, c.task, c.modality, [*c.train, *extra], c.test))
    quality = measure_quality(bench, translated, sources, mods, t_seed, probe_steps)
    report = {**report, "quality": quality, "translation_fraction": translation_fraction}
    if cache_dir is not None:  # the quality of the cached translator, for reports
        directory = Path(cache_dir) / NAME / cache.cache_key(key_args, VERSION)
        write_json(directory / f"quality_fraction{translation_fraction}.json", quality)
    log.info("translation: %s", {k: v for k, v in report.items() if k != "history"})
    out = type(bench)(NAME, bench.public, clients, bench.words, bench.validation)
    out.translation = report  # type: ignore[attr-defined]
    return out
