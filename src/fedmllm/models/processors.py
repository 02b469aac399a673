"""Processors of the real model families, and the one that works without torchvision.

``AutoProcessor`` loads every family's own processor. Qwen2-VL's (and Qwen2.5-VL's) also holds
a video processor that imports torchvision, which has no wheel beside some CPU builds of torch;
:class:`Qwen2VLImageProcessor` is the same processor without the video half (images go
through the PIL backend of Qwen2-VL's image processor), chosen with ``model.processor=image_only``.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.utils import is_torchvision_available

PROCESSOR_KINDS = ("auto", "image_only")

NO_TORCHVISION = (
    "Qwen2-VL's processor needs torchvision (its video processor imports it): install the "
    "torchvision build that matches your torch, or set model.processor=image_only to use the "
    "PIL image processor without video support."
)


class Qwen2VLImageProcessor(Qwen2VLProcessor):
    """Qwen2-VL's processor for images only: no video processor, so no torchvision.

    Text handling (``<|image_pad|>`` expanded to the image's grid of merged patches) is the
    parent's; only the constructor differs, because the parent requires a video processor.

    Args:
        image_processor: A Qwen2-VL image processor (the PIL backend works without torchvision).
        tokenizer: The model's tokenizer.
        chat_template: Optional chat template.
    """

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None
    ) -> None:
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        # The parent's __init__ insists on a video processor: skip to the mixin's.
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def load_processor(
    target: str,
    family: str,
    kind: str = "auto",
    local_files_only: bool = True,
    processor_kwargs: dict[str, Any] | None = None,
) -> Any:
    """The processor of a model directory or hub id.

    Args:
        target: Local directory or hub id.
        family: Template family (``llava``, ``qwen2_vl``, ``idefics3``).
        kind: ``"auto"`` (the checkpoint's processor) or ``"image_only"`` (Qwen2-VL without
            torchvision).
        local_files_only: Never download.
        processor_kwargs: Options for the image processor, e.g. Qwen2-VL's ``min_pixels`` /
            ``max_pixels`` (the visual-token cap) or Idefics3's ``do_image_splitting``.

    Returns:
        A processor callable as ``processor(text=..., images=..., return_tensors="pt")``.

    Raises:
        ValueError: An unknown ``kind``, or ``image_only`` for a family that needs no such path.
        ImportError: Qwen2-VL with ``kind="auto"`` where torchvision is missing.
    """
    if kind not in PROCESSOR_KINDS:
        raise ValueError(f"model.processor must be one of {PROCESSOR_KINDS}, got {kind!r}")
    kwargs = dict(processor_kwargs or {})
    if kind == "image_only":
        if family != "qwen2_vl":
            raise ValueError(
                f"model.processor=image_only is for Qwen2-VL only; {family} needs no torchvision"
            )
        image_processor = AutoImageProcessor.from_pretrained(
            target, local_files_only=local_files_only, **kwargs
        )
        tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=local_files_only)
        return Qwen2VLImageProcessor(image_processor, tokenizer)
    if family == "qwen2_vl" and not is_torchvision_available():
        raise ImportError(NO_TORCHVISION)
    return AutoProcessor.from_pretrained(target, local_files_only=local_files_only, **kwargs)
