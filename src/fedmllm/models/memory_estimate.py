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
  SDPA/flash attention keeps no ``seq x seq`` matrix) plus, per adapted linear, its input in
  float32 (the adapter path casts it up) and the rank-``r`` intermediate. With gradient
  checkpointing a layer keeps only its input (``h`` values) and one layer is recomputed at a
  time. A frozen vision tower without adapters keeps nothing (no gradient flows into it);
- **logits**: ``tokens x vocab`` in the activation dtype plus the float32 copy the loss makes
  and its gradient (``2 + 4 + 4`` bytes per entry).

Not counted: the CUDA context (about 0.5 GB), allocator fragmentation and transient buffers
(typically 10-20 % more). The GPU benchmark (``benchmarks/bench_real.py``) prints measured
peaks beside this estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
    dtype_bytes: int = 2
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
    per_layer += 4 * (shape.adapted_inputs_per_layer + shape.adapter_rank_per_layer)
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
