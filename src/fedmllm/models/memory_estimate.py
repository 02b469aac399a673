"""Peak GPU memory of one client's local training step, estimated from the architecture.

The estimate adds up what must live on the device at the peak of a training step (the end of
the forward pass, just before backward):

- **base weights**: every frozen parameter at the base dtype's bytes; with quantisation the
  language model's linear weights take 4.127 bits (NF4 with double quantisation, QLoRA's
  figure) or 8 bits plus a float32 scale per output row (int8), everything else the dtype;
- **adapters**: trainable adapter parameters at 16 bytes each (float32 weight, float32 grad,
  AdamW's two float32 moments), frozen adapter parameters (FFA's A, routed experts of other
  phases) at 4 bytes;
- **activations** kept for backward, per token of the batch (``tokens = batch x seq_len``):
  each decoder layer keeps ``7h + 2h_kv + 4i`` values of the activation dtype (norm inputs
  and outputs, q/k/v, attention and o_proj inputs, the gated MLP's four ``i``-wide tensors;
  SDPA/flash attention keeps no ``seq x seq`` matrix) plus, per adapted linear, its input and
  the rank-``r`` intermediate, and per MoLE layer the ``K`` routed copies of the input and
  the ``K`` expert outputs the gate multiplies (``K (in + out)``), all at the adapters'
  activation bytes (4 when they compute in float32, 2 under bf16/fp16 mixed precision), plus
  the gate-weighted outputs in float32 (``K out``; the scatter-add that sums them keeps its
  source for backward). With
  gradient checkpointing a layer keeps only its input (``h`` values) and one layer is
  recomputed at a time. A frozen vision tower without adapters keeps nothing (no gradient
  flows into it);
- **logits**: ``tokens x vocab`` in the activation dtype plus the float32 copy the loss makes
  and its gradient (``2 + 4 + 4`` bytes per entry).

Not counted: the CUDA context (about 0.5 GB), allocator fragmentation and transient buffers
(typically 10-20 % more). The GPU benchmark (``benchmarks/bench_real.py``) prints measured
peaks beside this estimate.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from fedmllm.lora.state import adapter_parameter_names

GB = 1e9
NF4_BITS = 4.127  # QLoRA (Dettmers et al., 2023): NF4 plus double-quantised block constants


@dataclass(frozen=True)
class DecoderDims:
    """Sizes of the decoder (language model) that set its activation memory."""

    hidden: int
    intermediate: int
    layers: int
    kv_hidden: int
    vocab: int
    gated_mlp: bool = True


@dataclass(frozen=True)
class TrainingShape:
    """What one local step holds: parameters by role, the batch and the levers."""

    base_params: int
    quantizable_params: int  # language-model linear weights (what bitsandbytes quantises)
    trainable_params: int
    frozen_adapter_params: int
    adapted_inputs_per_layer: int  # sum of in_features of the adapted linears of one layer
    adapter_rank_per_layer: int  # sum of ranks (x experts used per token) of one layer
    tokens: int  # batch size x sequence length
    routed_values_per_layer: int = 0  # MoLE: K x (in + out) per token, summed over one layer
    routed_fp32_per_layer: int = 0  # MoLE: K x out gate-weighted float32 values per token
    dtype_bytes: int = 2
    adapter_act_bytes: int = 4  # 2 when adapters compute under bf16/fp16 autocast
    quantization: str | None = None
    gradient_checkpointing: bool = False


def weight_bytes(shape: TrainingShape) -> float:
    """Bytes of the frozen base (see the module docstring for quantised weights)."""
    if shape.quantization is None:
        return shape.base_params * shape.dtype_bytes
    rest = (shape.base_params - shape.quantizable_params) * shape.dtype_bytes
    if shape.quantization == "nf4":
        return rest + shape.quantizable_params * NF4_BITS / 8
    if shape.quantization == "int8":
        return rest + shape.quantizable_params * 1.0  # per-row scales are negligible
    raise ValueError(f"unknown quantization {shape.quantization!r}")


def layer_activation_values(dims: DecoderDims) -> int:
    """Activation values one decoder layer keeps per token (without adapters)."""
    mlp = 4 * dims.intermediate if dims.gated_mlp else 2 * dims.intermediate
    return 7 * dims.hidden + 2 * dims.kv_hidden + mlp


def activation_bytes(dims: DecoderDims, shape: TrainingShape) -> float:
    """Bytes of the activations kept for backward (decoder only; see the module docstring)."""
    per_layer = layer_activation_values(dims) * shape.dtype_bytes
    adapter_values = (
        shape.adapted_inputs_per_layer
        + shape.adapter_rank_per_layer
        + shape.routed_values_per_layer
    )
    per_layer += shape.adapter_act_bytes * adapter_values
    per_layer += 4 * shape.routed_fp32_per_layer
    if shape.gradient_checkpointing:
        kept = dims.layers * dims.hidden * shape.dtype_bytes + per_layer
    else:
        kept = dims.layers * per_layer
    return shape.tokens * kept


def estimate_peak(dims: DecoderDims, shape: TrainingShape) -> dict[str, Any]:
    """The estimate's parts and their sum, in GB (10^9 bytes).

    Args:
        dims: The decoder's sizes.
        shape: Parameters, batch and memory levers.

    Returns:
        ``weights_gb``, ``adapters_gb``, ``activations_gb``, ``logits_gb``, ``peak_gb`` and
        the ``inputs`` they came from.
    """
    parts = {
        "weights_gb": weight_bytes(shape) / GB,
        "adapters_gb": (16 * shape.trainable_params + 4 * shape.frozen_adapter_params) / GB,
        "activations_gb": activation_bytes(dims, shape) / GB,
        "logits_gb": shape.tokens * dims.vocab * (shape.dtype_bytes + 8) / GB,
    }
    parts["peak_gb"] = sum(parts.values())
    return {**{k: round(v, 3) for k, v in parts.items()}, "inputs": asdict(shape)}


def decoder_dims(config: Any) -> DecoderDims:
    """The decoder sizes of a ``transformers`` config (its text config for a VLM)."""
    text = config.get_text_config()
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    return DecoderDims(
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        layers=text.num_hidden_layers,
        kv_hidden=kv_heads * head_dim,
        vocab=text.vocab_size,
        gated_mlp=text.model_type not in ("roberta", "bert"),
    )


def _adapted_per_layer(model: nn.Module, layers: int) -> tuple[int, int, int, int]:
    """Per decoder layer: adapted inputs, ranks (x experts a token uses), MoLE's routed values
    and its float32 gate-weighted outputs."""
    inputs = ranks = routed = routed_out = 0
    for m in model.modules():
        lora_a = getattr(m, "lora_A", None)
        if hasattr(m, "base_layer") and isinstance(lora_a, nn.Linear):
            k = getattr(m, "top_k", 0)
            inputs += m.in_features
            ranks += lora_a.out_features * (1 + k)
            routed += k * (m.in_features + m.out_features)
            routed_out += k * m.out_features
    n = max(1, layers)
    return inputs // n, ranks // n, routed // n, routed_out // n


def training_shape(
    model: nn.Module,
    config: Any,
    language: str,
    tokens: int,
    dtype_bytes: int = 2,
    quantization: str | None = None,
    gradient_checkpointing: bool = False,
    head_params: int = 0,
    adapter_act_bytes: int = 4,
) -> TrainingShape:
    """The :class:`TrainingShape` of an adapted model (meta or real).

    Args:
        model: The model with the method's adapters injected.
        config: Its ``transformers`` config.
        language: Regex of the language model's module names (its linears get quantised).
        tokens: Batch size x sequence length.
        dtype_bytes: Bytes per base weight and activation (2 for bf16/fp16).
        quantization: ``None``, ``"nf4"`` or ``"int8"``.
        gradient_checkpointing: Whether activations are recomputed.
        head_params: Parameters of a task head trained in full beside the adapters.
        adapter_act_bytes: Bytes of the activations adapters keep (2 under 16-bit autocast).
    """
    adapters = set(adapter_parameter_names(model))
    rx = re.compile(language)
    base = trainable = frozen_adapter = quantizable = 0
    for name, p in model.named_parameters():
        if name in adapters:
            trainable += p.numel() if p.requires_grad else 0
            frozen_adapter += 0 if p.requires_grad else p.numel()
            continue
        base += p.numel()
        owner = model.get_submodule(name.rsplit(".", 1)[0])
        if isinstance(owner, nn.Linear) and name.endswith(".weight") and rx.search(name):
            quantizable += p.numel()
    per_in, per_rank, routed, routed_out = _adapted_per_layer(model, decoder_dims(config).layers)
    return TrainingShape(
        base_params=base,
        quantizable_params=quantizable,
        trainable_params=trainable + head_params,
        frozen_adapter_params=frozen_adapter,
        adapted_inputs_per_layer=per_in,
        adapter_rank_per_layer=per_rank,
        tokens=tokens,
        routed_values_per_layer=routed,
        routed_fp32_per_layer=routed_out,
        dtype_bytes=dtype_bytes,
        adapter_act_bytes=adapter_act_bytes,
        quantization=quantization,
        gradient_checkpointing=gradient_checkpointing,
    )
