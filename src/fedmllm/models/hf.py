"""Any Hugging Face image-text-to-text model (LLaVA, Qwen2-VL, Idefics3/SmolVLM) as an engine.

The default path never touches a hub: weights are read from a local directory or the local
Hugging Face cache, and only ``local_files_only=False`` allows a download. The memory levers a
7B run needs are options here: base weights in bf16/fp16 (``dtype``), 4-bit NF4 or 8-bit
loading with bitsandbytes (``quantization``, CUDA only), gradient checkpointing, and the
processor options that cap the visual tokens (``processor_kwargs``). Adapters injected later
stay float32 over any of these bases (``fedmllm.lora.layers.default_adapter_dtype``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

from fedmllm.data.collate import ProcessorCollator
from fedmllm.models.engine import Engine
from fedmllm.models.processors import load_processor
from fedmllm.models.templates import get_template

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
QUANTIZATIONS = ("nf4", "int8")


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    """``"bf16"``/``"bfloat16"``/... -> ``torch.dtype``; ``"auto"`` or ``None`` -> ``"auto"``."""
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype or "auto"
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype must be auto or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def quantization_config(
    kind: str | None, compute_dtype: torch.dtype | str, skip_modules: Sequence[str] = ()
) -> BitsAndBytesConfig | None:
    """bitsandbytes settings for ``kind`` (``nf4``: QLoRA's 4-bit NormalFloat; ``int8``).

    Args:
        kind: ``None`` (no quantisation), ``"nf4"`` or ``"int8"``.
        compute_dtype: Dtype of the 4-bit matmuls (bf16 unless the base is fp16).
        skip_modules: Module names kept unquantised (vision tower, projector, lm_head).

    Raises:
        ValueError: An unknown kind.
        RuntimeError: No CUDA device (bitsandbytes' kernels need one).
        ImportError: bitsandbytes is not installed.
    """
    if kind is None:
        return None
    if kind not in QUANTIZATIONS:
        raise ValueError(f"model.quantization must be null or one of {QUANTIZATIONS}, got {kind!r}")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"model.quantization={kind} loads the base with bitsandbytes, which needs a CUDA "
            "GPU and this machine has none: use model.quantization=null (with "
            "model.dtype=bfloat16 to halve the memory) here"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"model.quantization={kind} needs bitsandbytes: pip install 'fedmllm[quant]'"
        ) from exc
    skip = list(skip_modules)
    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    compute = compute_dtype if isinstance(compute_dtype, torch.dtype) else torch.bfloat16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
        llm_int8_skip_modules=skip,
    )


def set_checkpointing(model: Any, on: bool) -> None:
    """Turn (non-reentrant) activation checkpointing on or off.

    transformers 5.25 renamed ``gradient_checkpointing_*`` to ``activation_checkpointing_*``
    (the old names warn); earlier 5.x releases have only the old ones.
    """
    if not on:
        off = getattr(model, "activation_checkpointing_disable", None)
        (off or model.gradient_checkpointing_disable)()
        return
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _image_size(processor: object) -> int | None:
    """The square crop side of the processor's image processor, when it has one."""
    crop = getattr(getattr(processor, "image_processor", None), "crop_size", None)
    # A dict in older releases, a SizeDict (attribute access) in transformers 5.
    get = crop.get if isinstance(crop, dict) else lambda key: getattr(crop, key, None)
    height, width = get("height"), get("width")
    return height if isinstance(height, int) and height == width else None


def _skip_modules(modules: dict[str, Any] | None) -> list[str]:
    """Modules bitsandbytes leaves unquantised: vision tower, projector and the output head.

    bitsandbytes matches plain substrings of module names, so the ``modules`` regexes are
    split at their alternatives (``vision_tower|vision_model`` -> both names).
    """
    names = dict(modules or {})
    patterns = [str(names[k]) for k in ("vision", "projector") if names.get(k)]
    skip = [part for pattern in patterns for part in pattern.split("|")]
    return [s.replace("\\", "") for s in skip] + ["lm_head"]


def _missing_model(path_or_id: str, local_files_only: bool) -> FileNotFoundError:
    where = "the local Hugging Face cache" if local_files_only else "the hub"
    return FileNotFoundError(
        f"no image-text-to-text model at {path_or_id!r}: not a directory and not in {where}. "
        f"Fetch the weights on a machine with internet (`hf download {path_or_id} --local-dir "
        "<dir>`, then model.path=<dir>), or set model.local_files_only=false to download now."
    )


def _load(
    path: str, family: str, processor: str, processor_kwargs: Any, load: dict[str, Any]
) -> tuple[Any, Any]:
    """The processor and the model of ``path`` (a local directory or a hub id)."""
    source = Path(path).expanduser()
    target = str(source) if source.exists() else path
    local_only = load["local_files_only"]
    try:
        proc = load_processor(target, family, processor, local_only, processor_kwargs)
        return proc, AutoModelForImageTextToText.from_pretrained(target, **load)
    except (OSError, ValueError) as exc:  # ValueError: a malformed hub id
        if source.exists():
            raise  # a local directory's own error (missing file, wrong model class) says more
        raise _missing_model(path, local_only) from exc


def build_hf_engine(
    path: str,
    family: str,
    local_files_only: bool = True,
    dtype: str | torch.dtype | None = "auto",
    quantization: str | None = None,
    gradient_checkpointing: bool = False,
    device: str | None = None,
    processor: str = "auto",
    processor_kwargs: dict[str, Any] | None = None,
    modules: dict[str, Any] | None = None,
    arch: str | None = None,
    public: Sequence[Any] | None = None,
    vocabulary: Sequence[str] | None = None,
    cache_dir: str | None = None,
    pretrain: dict[str, Any] | None = None,
    progress: bool = True,
) -> Engine:
    """Load a model and its processor into an engine with a frozen base.

    Args:
        path: A local directory saved with ``save_pretrained``, or a hub id (read from the
            local cache unless ``local_files_only`` is false).
        family: Prompt template family (``llava``, ``qwen2_vl``, ``idefics3``/``smolvlm``).
        local_files_only: Never download; the default.
        dtype: Base weight dtype: ``auto`` (the checkpoint's), ``float32``, ``bfloat16``,
            ``float16``.
        quantization: ``None``, ``"nf4"`` (4-bit, QLoRA) or ``"int8"``; CUDA and bitsandbytes.
        gradient_checkpointing: Recompute activations in backward (non-reentrant), trading
            about a third more compute for activations of one layer instead of all.
        device: Where to load the weights (``None``: CPU, or CUDA when quantised; Fabric
            moves the model to its device later in any case).
        processor: ``"auto"``, or ``"image_only"`` for Qwen2-VL without torchvision.
        processor_kwargs: Image-processor options (Qwen2-VL ``min_pixels``/``max_pixels``).
        modules: The family's module-name regexes (``language``, ``vision``, ``projector``);
            method configs read them, this builder uses them to keep the vision tower,
            projector and head out of quantisation.
        arch: Architecture name for the cost dry run; not used here.
        public: The benchmark's public split; a pretrained model does not use it.
        vocabulary: The benchmark's word list; a pretrained model keeps its own tokenizer.
        cache_dir: The tiny model's cache; not used here.
        pretrain: The tiny model's pretraining settings (``debug=smoke`` sets them for any
            model); a pretrained model ignores them.
        progress: The tiny model's progress bar; not used here.

    Returns:
        The engine; its collators use the processor, which expands image tokens itself.

    Raises:
        FileNotFoundError: When the model cannot be found locally, saying how to fetch it.
    """
    del arch, public, vocabulary, cache_dir, pretrain, progress  # other builders' inputs
    template = get_template(family)
    torch_dtype = parse_dtype(dtype)
    load: dict[str, Any] = {"local_files_only": local_files_only, "dtype": torch_dtype}
    quant = quantization_config(quantization, torch_dtype, _skip_modules(modules))
    if quant is not None or device is not None:
        load["device_map"] = device or "cuda"  # bitsandbytes loads straight onto the GPU
    if quant is not None:
        load["quantization_config"] = quant
    proc, model = _load(path, template.family, processor, processor_kwargs, load)
    if gradient_checkpointing:
        set_checkpointing(model, True)
    engine = Engine(
        model=model.eval(),
        tokenizer=proc.tokenizer,
        template=template,
        collator=ProcessorCollator(proc, template, mode="train"),
        gen_collator=ProcessorCollator(proc, template, mode="generate"),
        image_size=_image_size(proc),
        num_image_tokens=None,
        family=family,
        info={"source": str(path), "from_cache": False, "dtype": str(model.dtype)},
    )
    engine.freeze_base()
    return engine


def cost_only_model(name: str, **_: Any) -> Engine:
    """Target of architectures that serve the cost dry run only (text classifiers)."""
    raise ValueError(
        f"model={name} is an architecture for `python -m fedmllm.cost` only, not an "
        "image-text-to-text model to train; pick model=hf or a named VLM config"
    )
