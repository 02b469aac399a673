"""Any Hugging Face image-text-to-text model (LLaVA, Qwen2-VL, Idefics3/SmolVLM) as an engine.

The default path never touches a hub: weights are read from a local directory or the local
Hugging Face cache, and only ``local_files_only=False`` allows a download.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from fedmllm.data.collate import ProcessorCollator
from fedmllm.models.engine import Engine
from fedmllm.models.templates import get_template


def _image_size(processor: object) -> int | None:
    """The square crop side of the processor's image processor, when it has one."""
    crop = getattr(getattr(processor, "image_processor", None), "crop_size", None)
    # A dict in older releases, a SizeDict (attribute access) in transformers 5.
    get = crop.get if isinstance(crop, dict) else lambda key: getattr(crop, key, None)
    height, width = get("height"), get("width")
    return height if isinstance(height, int) and height == width else None


def build_hf_engine(
    path_or_id: str,
    family: str,
    local_files_only: bool = True,
    torch_dtype: str | torch.dtype = "auto",
    device: str | None = None,
) -> Engine:
    """Load a model and its processor into an engine with a frozen base.

    Args:
        path_or_id: A local directory saved with ``save_pretrained``, or a hub id (read from the
            local cache unless ``local_files_only`` is false).
        family: Prompt template family (``llava``, ``qwen2_vl``, ``idefics3``/``smolvlm``).
        local_files_only: Never download; the default.
        torch_dtype: Weight dtype (``"auto"`` keeps the checkpoint's).
        device: Where to put the model (``None`` keeps CPU).

    Returns:
        The engine; its collators use the processor, which expands image tokens itself.

    Raises:
        FileNotFoundError: When the model cannot be found locally, with what was tried.
    """
    template = get_template(family)
    source = Path(path_or_id).expanduser()
    target = str(source) if source.exists() else path_or_id
    try:
        processor = AutoProcessor.from_pretrained(target, local_files_only=local_files_only)
        model = AutoModelForImageTextToText.from_pretrained(
            target, local_files_only=local_files_only, dtype=torch_dtype
        )
    except (OSError, ValueError) as exc:  # ValueError: a malformed hub id
        where = "the local Hugging Face cache" if local_files_only else "the hub"
        raise FileNotFoundError(
            f"no image-text-to-text model at {path_or_id!r}: not a directory and not in {where}. "
            "Download it first (`huggingface-cli download <id> --local-dir <dir>`) and pass "
            "the directory, or set local_files_only=False to allow a download."
        ) from exc
    if device is not None:
        model = model.to(device)
    engine = Engine(
        model=model.eval(),
        tokenizer=processor.tokenizer,
        template=template,
        collator=ProcessorCollator(processor, template, mode="train"),
        gen_collator=ProcessorCollator(processor, template, mode="generate"),
        image_size=_image_size(processor),
        num_image_tokens=None,
        family=family,
        info={"source": target, "from_cache": False},
    )
    engine.freeze_base()
    return engine
