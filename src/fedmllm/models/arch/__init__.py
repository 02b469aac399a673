"""Architectures of the named real models, shipped as their Hugging Face ``config.json``.

Each folder ``<name>/config.json`` holds the hub's config of one model (values as published
with the checkpoint: ``llava_1_5_7b`` is ``llava-hf/llava-1.5-7b-hf``, ...). Building one on
the meta device gives every module and parameter shape without weights or a download, which is
all the cost dry run (``python -m fedmllm.cost``) and the GPU benchmark need.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

ARCH_DIR = Path(__file__).resolve().parent


def arch_names() -> list[str]:
    """Names of the shipped architectures (folders holding a ``config.json``)."""
    return sorted(p.parent.name for p in ARCH_DIR.glob("*/config.json"))


def arch_dir(name_or_path: str | Path) -> Path:
    """The folder of a shipped architecture by name, or any folder holding a ``config.json``.

    Raises:
        FileNotFoundError: Neither a shipped name nor a folder with a ``config.json``.
    """
    shipped = ARCH_DIR / str(name_or_path)
    for folder in (shipped, Path(name_or_path).expanduser()):
        if (folder / "config.json").is_file():
            return folder
    raise FileNotFoundError(
        f"no architecture {str(name_or_path)!r}: not one of {arch_names()} and not a folder "
        "holding a config.json"
    )


def arch_config(name_or_path: str | Path) -> PretrainedConfig:
    """The ``transformers`` config of a shipped architecture (or of a model folder)."""
    return AutoConfig.from_pretrained(str(arch_dir(name_or_path)), local_files_only=True)


def model_class(config: PretrainedConfig) -> type[PreTrainedModel]:
    """The model class named first in ``config.architectures``."""
    names = getattr(config, "architectures", None) or []
    if not names or not hasattr(transformers, names[0]):
        raise ValueError(f"config names no transformers model class: architectures={names}")
    return getattr(transformers, names[0])


def build_model(
    config: PretrainedConfig, dtype: torch.dtype = torch.bfloat16, device: str = "meta"
) -> PreTrainedModel:
    """The model of ``config`` with uninitialised weights on ``device`` (meta: no memory).

    Args:
        config: A model config (e.g. from :func:`arch_config`).
        dtype: Parameter dtype.
        device: ``"meta"`` for shapes only; a real device allocates (random-looking) memory.

    Returns:
        The model in eval mode.
    """
    with torch.device(device):
        model = model_class(config)._from_config(config, dtype=dtype)
    return model.eval()


def build_meta_model(name_or_path: str | Path, dtype: torch.dtype = torch.bfloat16):
    """A shipped architecture on the meta device: shapes and module names, no weights."""
    return build_model(arch_config(name_or_path), dtype, "meta")


def image_tokens(config: PretrainedConfig, processor_kwargs: dict | None = None) -> int:
    """Visual tokens one image puts into the language model's sequence (0: text only).

    LLaVA: the CLIP patch grid (576 at 336 px / 14). Qwen2-VL: one token per 28x28 pixels
    after 2x2 merging, at most ``max_pixels / 784`` (the processor's cap; 1280 by default).
    Idefics3/SmolVLM: ``(image_size / patch)^2 / scale_factor^2`` per tile, times 17 tiles
    (4x4 plus the global image) with image splitting, 1 tile without.
    """
    kwargs = dict(processor_kwargs or {})
    vision = getattr(config, "vision_config", None)
    if vision is None:
        return 0
    kind = config.model_type
    if kind in ("llava",):
        return (vision.image_size // vision.patch_size) ** 2
    if kind in ("qwen2_vl", "qwen2_5_vl"):
        side = vision.patch_size * vision.spatial_merge_size
        return int(kwargs.get("max_pixels", 28 * 28 * 1280)) // side**2
    if kind in ("idefics3", "smolvlm"):
        tile = (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2
        return tile * (17 if kwargs.get("do_image_splitting", True) else 1)
    raise ValueError(f"no image-token rule for model type {kind!r}")
