"""The engine: one frozen base model with its tokeniser, template and collators.

Every client shares one engine; methods inject adapters into ``engine.model`` and swap their
tensors per client. ``build_tiny_vlm`` is the Hydra target of
``fedmllm/configs/model/tiny_vlm.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from fedmllm.data.collate import VLMCollator
from fedmllm.data.collate_audio import AUDIO_TOKEN, AudioVLMCollator
from fedmllm.data.schema import Sample
from fedmllm.models.audio_settings import TinyAudioConfig
from fedmllm.models.pretrain import (
    CacheError,
    PretrainConfig,
    cache_hash,
    data_fingerprint,
    load_cached,
    pretrain,
    save_cached,
)
from fedmllm.models.templates import PromptTemplate, get_template
from fedmllm.models.tiny_vlm import (
    TinyVLMConfig,
    build_tiny_llava,
    count_parameters,
    llava_config,
)
from fedmllm.models.tokenizer import build_word_tokenizer, decode_text

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cache layout or the tokeniser rules change

# Batch keys the model's forward/generate must not see.
_NON_MODEL_KEYS = frozenset({"samples", "labels"})


@dataclass
class Engine:
    """A base model and everything needed to feed it and read its answers.

    Attributes:
        model: The base model (frozen after building; methods inject adapters later).
        tokenizer: Its tokeniser.
        template: The family's prompt template.
        collator: Training collator (right padding, labels on answer + eos).
        gen_collator: Generation collator (left-padded prompts plus raw ``samples``).
        image_size: Image side the vision tower takes (``None`` when a processor decides).
        num_image_tokens: Image tokens per image (``None`` when a processor decides).
        family: Model family (``llava``, ``qwen2_vl``, ``idefics3``).
        info: Provenance: ``from_cache``, ``cache_path``, pretraining steps, loss and time.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    template: PromptTemplate
    collator: Callable[[Sequence[Sample]], dict[str, Any]]
    gen_collator: Callable[[Sequence[Sample]], dict[str, Any]]
    image_size: int | None
    num_image_tokens: int | None
    family: str
    info: dict[str, Any] = field(default_factory=dict)

    def freeze_base(self) -> None:
        """Turn off gradients of every current parameter (adapters are added afterwards)."""
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], max_new_tokens: int = 32) -> list[str]:
        """Greedy answers for a left-padded generation batch.

        Args:
            batch: A ``gen_collator`` batch; ``samples`` and ``labels`` are ignored.
            max_new_tokens: Longest answer in tokens; generation stops earlier at eos.

        Returns:
            One decoded answer per row (prompt excluded), via ``decode_text``.
        """
        device = next(self.model.parameters()).device
        inputs = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()
            if k not in _NON_MODEL_KEYS
        }
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        finally:
            self.model.train(was_training)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return [decode_text(self.tokenizer, row) for row in new_tokens]


def _tokenizer_texts(template: PromptTemplate, public: Sequence[Sample]) -> list[str]:
    texts = [template.prompt("", has_image=True), template.answer_suffix("")]
    for s in public:
        texts.extend((s.question, s.answer))
    return texts


def _cache_key(
    cfg: TinyVLMConfig,
    pcfg: PretrainConfig,
    template: PromptTemplate,
    vocabulary: Sequence[str],
    public: Sequence[Sample],
    audio: TinyAudioConfig | None = None,
) -> dict[str, Any]:
    extra = {"audio": audio.to_dict()} if audio is not None else {}
    return {
        **extra,
        "format": CACHE_FORMAT,
        "model": cfg.to_dict(),
        "vocabulary": list(vocabulary),
        "template": [
            template.family,
            template.template,
            template.image_text,
            template.answer_format,
        ],
        "pretrain": pcfg.to_dict(),
        "data": data_fingerprint(public),
    }


def _collator(
    cfg: TinyVLMConfig,
    tokenizer: PreTrainedTokenizerBase,
    template: PromptTemplate,
    audio: TinyAudioConfig | None,
    mode: str,
) -> VLMCollator:
    """The tiny model's collator (with audio tokens and features when it hears)."""
    args = (tokenizer, template, cfg.num_image_tokens, cfg.image_size)
    kwargs: dict[str, Any] = {"mode": mode}
    if mode == "train":
        kwargs["max_length"] = cfg.max_position_embeddings
    if audio is None:
        return VLMCollator(*args, **kwargs)
    return AudioVLMCollator(*args, features=audio.features(), **kwargs)


def _build_model(
    cfg: TinyVLMConfig, tokenizer: PreTrainedTokenizerBase, audio: TinyAudioConfig | None
) -> PreTrainedModel:
    """The tiny LLaVA, or the tiny LLaVA with an audio tower (same generation settings)."""
    model = build_tiny_llava(cfg, tokenizer)
    if audio is None:
        return model
    from fedmllm.models.audio_llava import AudioLlavaForConditionalGeneration, audio_llava_config

    audio_id = tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
    hearing = AudioLlavaForConditionalGeneration(
        audio_llava_config(llava_config(cfg, tokenizer), audio, audio_id)
    )
    hearing.generation_config = model.generation_config
    return hearing.eval()


def _train_model(
    cfg: TinyVLMConfig,
    pcfg: PretrainConfig,
    tokenizer: PreTrainedTokenizerBase,
    template: PromptTemplate,
    public: Sequence[Sample],
    progress: bool,
    audio: TinyAudioConfig | None = None,
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """A seeded model, pretrained when ``pcfg.steps > 0``; also returns loss and wall time."""
    with torch.random.fork_rng(devices=[]):
        # Seed the initialisation without disturbing the caller's RNG stream.
        torch.manual_seed(pcfg.seed)
        model = _build_model(cfg, tokenizer, audio)
        if pcfg.steps == 0:
            return model, {}
        collator = _collator(cfg, tokenizer, template, audio, "train")
        result = pretrain(model, collator, list(public), pcfg, progress=progress)
    stats = {"final_loss": result.final_loss, "wall_s": result.wall_s}
    return model, {**stats, "losses": result.losses[:: max(1, pcfg.steps // 200)]}


def build_tiny_vlm(
    cache_dir: str | Path,
    public: Sequence[Sample],
    vocabulary: Sequence[str],
    config: dict[str, Any] | TinyVLMConfig | None = None,
    pretrain: dict[str, Any] | PretrainConfig | None = None,
    family: str = "llava",
    progress: bool = True,
    audio: dict[str, Any] | TinyAudioConfig | None = None,
    modules: dict[str, Any] | None = None,
) -> Engine:
    """Build the tiny LLaVA engine, pretrained on ``public`` and cached, or loaded from cache.

    The cache lives at ``<cache_dir>/models/tiny_vlm-<hash>/``; the hash covers the model
    config, vocabulary, template, pretraining config and a fingerprint of ``public``. An
    unusable cache entry is logged as a warning and rebuilt. ``pretrain.steps == 0`` gives the
    seeded random initialisation and touches no cache.

    Args:
        cache_dir: Root of the data/model cache.
        public: The benchmark's public split.
        vocabulary: The benchmark's word list (the tokeniser also learns ``public``'s tokens).
        config: Model sizes (``TinyVLMConfig`` fields).
        pretrain: Pretraining hyper-parameters (``PretrainConfig`` fields).
        family: Prompt template family.
        progress: Show the pretraining progress bar.
        audio: The audio side (``TinyAudioConfig`` fields) for a model that also hears
            (``model=tiny_avlm``); ``None`` builds the plain tiny LLaVA.
        modules: Module-name regexes the method configs read (``model.modules.*``); the
            builder itself does not need them.

    Returns:
        The engine, its base model frozen and in eval mode; ``engine.info["from_cache"]`` says
        whether pretraining was skipped.

    Raises:
        ValueError: Pretraining asked for (``model.pretrain.steps > 0``) on an empty public
            split; the message names the options that fix it.
    """
    cfg = TinyVLMConfig.from_dict(config)
    acfg = TinyAudioConfig.from_dict(audio) if audio is not None else None
    pcfg = PretrainConfig.from_dict(pretrain)
    if pcfg.steps > 0 and not public:
        raise ValueError(
            "the tiny model is pretrained on the benchmark's public split, and it is empty: set "
            "benchmark.public_size=<n> (records kept out of the clients' splits; a small dataset "
            "may need smaller benchmark.train_sizes to leave them over), or "
            "model.pretrain.steps=0 for a random start, or model=hf model.path=<a pretrained "
            "model>"
        )
    template = get_template(family)
    tokenizer = build_word_tokenizer(list(vocabulary), _tokenizer_texts(template, public))
    if acfg is not None:
        tokenizer.add_special_tokens({"additional_special_tokens": [AUDIO_TOKEN]})
    info: dict[str, Any] = {"from_cache": False, "cache_path": None, "steps": pcfg.steps}
    model = None
    if pcfg.steps > 0:
        key = _cache_key(cfg, pcfg, template, vocabulary, public, acfg)
        digest = cache_hash(key)
        path = Path(cache_dir) / "models" / f"tiny_vlm-{digest}"
        info["cache_path"] = str(path)
        if path.exists():
            try:
                model_class = None
                if acfg is not None:
                    from fedmllm.models.audio_llava import AudioLlavaForConditionalGeneration

                    model_class = AudioLlavaForConditionalGeneration
                model, tokenizer, manifest = load_cached(path, digest, model_class)
                info.update(from_cache=True, final_loss=manifest.get("final_loss"))
                info["pretrain_wall_s"] = manifest.get("wall_s")
                log.info("pretrained tiny model loaded from the cache %s", path)
            except CacheError as exc:
                log.warning("cached tiny model unusable, rebuilding: %s", exc)
    if model is None:
        model, stats = _train_model(cfg, pcfg, tokenizer, template, public, progress, acfg)
        if pcfg.steps > 0:
            info.update(final_loss=stats["final_loss"], pretrain_wall_s=stats["wall_s"])
            save_cached(path, model, tokenizer, {"hash": digest, "key": key, **stats})
    info["num_parameters"] = count_parameters(model)
    engine = Engine(
        model=model.eval(),
        tokenizer=tokenizer,
        template=template,
        collator=_collator(cfg, tokenizer, template, acfg, "train"),
        gen_collator=_collator(cfg, tokenizer, template, acfg, "generate"),
        image_size=cfg.image_size,
        num_image_tokens=cfg.num_image_tokens,
        family=family,
        info=info,
    )
    engine.freeze_base()
    return engine
