"""Collate samples into model batches with a prompt template.

The data room may not import models, so the tokeniser, processor and template are passed in
and used duck-typed: a tokeniser is anything callable like a Hugging Face tokeniser with
``pad_token_id``, ``eos_token_id`` and ``convert_tokens_to_ids``; a template has
``prompt(question, has_image)``, ``answer_suffix(answer)`` and ``image_token``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fedmllm.data.imaging import read_image
from fedmllm.data.schema import Sample

IGNORE_INDEX = -100
MODES = ("train", "generate")


def load_image(image: np.ndarray | str | Path) -> Image.Image:
    """An RGB PIL image from an ``HxWx3`` (or ``HxW``) uint8 array or an image file.

    Files go through :func:`fedmllm.data.imaging.read_image` (DICOM, NIfTI, PNG/JPEG, ...).
    """
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"image array must be HxWx3, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise ValueError(f"image array must be uint8, got {arr.dtype}")
        return Image.fromarray(np.ascontiguousarray(arr[..., :3]), mode="RGB")
    # Files (PNG/JPEG, DICOM, NIfTI, or an ImageRef with frame/slice and window) are decoded
    # by the imaging module, which names the file in every error.
    return Image.fromarray(read_image(image))


def image_to_tensor(
    image: np.ndarray | str | Path,
    size: int,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> torch.Tensor:
    """A ``3 x size x size`` float32 tensor, resized with PIL (bilinear) only when needed."""
    arr = image if isinstance(image, np.ndarray) else None
    if arr is None or arr.ndim != 3 or arr.shape[:2] != (size, size) or arr.shape[2] != 3:
        pil = load_image(image)
        if pil.size != (size, size):
            pil = pil.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(pil)
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - mean_t) / std_t


def _images_present(samples: Sequence[Sample]) -> bool:
    """Whether the batch has images; raises when it mixes image and text-only samples."""
    flags = [s.image is not None for s in samples]
    if any(flags) and not all(flags):
        raise ValueError(
            f"batch mixes {sum(flags)} samples with images and {len(flags) - sum(flags)} text-only "
            "samples; batch them separately (mixed batches are not supported yet)"
        )
    return bool(flags) and flags[0]


def _pad(seqs: list[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    rows = [
        ([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in seqs
    ]
    return torch.tensor(rows, dtype=torch.long)


class VLMCollator:
    """Samples -> ``input_ids``, ``attention_mask``, ``labels``, ``pixel_values``.

    The prompt's single image placeholder is expanded to ``num_image_tokens`` copies of the
    image-token id (what LLaVA's processor does), so the model's placeholder count matches its
    vision features. Labels supervise the answer and the eos token only; prompt, image and
    padding positions are ``-100``.

    ``mode="train"`` pads on the right; ``mode="generate"`` returns left-padded prompts only
    (generation appends on the right) plus the raw ``samples`` for the evaluator.
    """

    def __init__(
        self,
        tokenizer: Any,
        template: Any,
        num_image_tokens: int,
        image_size: int,
        mode: str = "train",
        max_length: int | None = None,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
    ) -> None:
        """Args:
        tokenizer: A tokeniser that prepends bos when ``add_special_tokens`` is true.
        template: The model family's prompt template.
        num_image_tokens: Image-token ids per image (the vision tower's patch count).
        image_size: Side of the square images the vision tower takes.
        mode: ``"train"`` or ``"generate"``.
        max_length: Truncate training sequences (answer end first) to this many tokens.
        image_mean: Per-channel normalisation mean.
        image_std: Per-channel normalisation std.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.tokenizer = tokenizer
        self.template = template
        self.num_image_tokens = num_image_tokens
        self.image_size = image_size
        self.mode = mode
        self.max_length = max_length
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.image_token_id = tokenizer.convert_tokens_to_ids(template.image_token)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no id for image token {template.image_token!r}")

    def _expand(self, ids: list[int], has_image: bool, index: int) -> list[int]:
        count = ids.count(self.image_token_id)
        if count != (1 if has_image else 0):
            raise ValueError(
                f"sample {index}: prompt holds {count} image tokens, expected {int(has_image)}"
            )
        if not has_image:
            return ids
        pos = ids.index(self.image_token_id)
        return ids[:pos] + [self.image_token_id] * self.num_image_tokens + ids[pos + 1 :]

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Collate one batch.

        Args:
            samples: Samples that all have an image, or all have none.

        Returns:
            ``input_ids``, ``attention_mask``, ``pixel_values`` (only when the batch has images),
            and ``labels`` (train mode) or ``samples`` (generate mode).
        """
        if not samples:
            raise ValueError("cannot collate an empty batch")
        has_image = _images_present(samples)
        prompts = [self.template.prompt(s.question, has_image) for s in samples]
        prompt_ids = [
            self._expand(list(ids), has_image, i)
            for i, ids in enumerate(self.tokenizer(prompts)["input_ids"])
        ]
        pad_id = self.tokenizer.pad_token_id
        batch: dict[str, Any] = {}
        if self.mode == "generate":
            batch["input_ids"] = _pad(prompt_ids, pad_id, left=True)
            batch["attention_mask"] = _pad([[1] * len(p) for p in prompt_ids], 0, left=True)
            batch["samples"] = list(samples)
        else:
            suffixes = [self.template.answer_suffix(s.answer) for s in samples]
            answers = self.tokenizer(suffixes, add_special_tokens=False)["input_ids"]
            seqs, labels = [], []
            for p, a in zip(prompt_ids, answers, strict=True):
                target = list(a) + [self.tokenizer.eos_token_id]
                ids, lab = p + target, [IGNORE_INDEX] * len(p) + target
                if self.max_length is not None:
                    if len(p) >= self.max_length:
                        raise ValueError(
                            f"prompt of {len(p)} tokens exceeds max_length {self.max_length}"
                        )
                    ids, lab = ids[: self.max_length], lab[: self.max_length]
                seqs.append(ids)
                labels.append(lab)
            batch["input_ids"] = _pad(seqs, pad_id, left=False)
            batch["attention_mask"] = _pad([[1] * len(s) for s in seqs], 0, left=False)
            batch["labels"] = _pad(labels, IGNORE_INDEX, left=False)
        if has_image:
            batch["pixel_values"] = torch.stack(
                [
                    image_to_tensor(s.image, self.image_size, self.image_mean, self.image_std)
                    for s in samples
                ]
            )
        return batch


class ProcessorCollator:
    """Collate with a Hugging Face processor, which expands image tokens itself.

    Used for real models (LLaVA, Qwen2-VL, Idefics3). In train mode the prompt of each sample
    is processed alone as well, to know how many leading tokens to mask in the labels.
    """

    def __init__(self, processor: Any, template: Any, mode: str = "train") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.processor = processor
        self.template = template
        self.mode = mode
        self.tokenizer = processor.tokenizer

    def _process(
        self, texts: list[str], images: list[Image.Image] | None, side: str
    ) -> dict[str, Any]:
        old_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = side
        try:
            kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
            if images is not None:
                kwargs["images"] = images
            return dict(self.processor(**kwargs))
        finally:
            self.tokenizer.padding_side = old_side

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Collate one batch; keys as ``VLMCollator`` plus whatever the processor adds."""
        if not samples:
            raise ValueError("cannot collate an empty batch")
        has_image = _images_present(samples)
        images = [load_image(s.image) for s in samples] if has_image else None
        prompts = [self.template.prompt(s.question, has_image) for s in samples]
        if self.mode == "generate":
            batch = self._process(prompts, images, side="left")
            batch["samples"] = list(samples)
            return batch
        eos = self.tokenizer.eos_token or ""
        full = [
            p + self.template.answer_suffix(s.answer) + eos
            for p, s in zip(prompts, samples, strict=True)
        ]
        batch = self._process(full, images, side="right")
        prompt_lens = self._process(prompts, images, side="right")["attention_mask"].sum(dim=1)
        labels = batch["input_ids"].clone()
        positions = torch.arange(labels.shape[1]).unsqueeze(0)
        labels[(positions < prompt_lens.unsqueeze(1)) | (batch["attention_mask"] == 0)] = (
            IGNORE_INDEX
        )
        batch["labels"] = labels
        return batch
