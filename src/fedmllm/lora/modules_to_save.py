"""Linear layers trained in full beside LoRA (PEFT's ``modules_to_save``), e.g. a projector.

UniFLoW trains the vision-to-LLM projector itself, not a low-rank update of it. Wrapping the
projector's linears as adapter layers makes their trainable copies ordinary adapter state: the
state helpers, the optimiser and the round loop treat them like LoRA tensors, and they travel
to the server under keys shaped like PEFT's in-memory parameter names without the adapter
name (``<module>.modules_to_save.weight``). Exporting them with ``save_adapter`` in a
PEFT-loadable layout is not done here.
"""

from __future__ import annotations

import torch
from torch import nn

from fedmllm.lora.inject import freeze_non_adapter, replace_linear_layers
from fedmllm.lora.layers import AdapterLayer, default_adapter_dtype


class ModulesToSaveLinear(AdapterLayer):
    """A frozen linear layer and a trainable full copy of it that replaces it in forward.

    The frozen original stays as ``base_layer`` (so the pretrained weights are never lost and
    the layer's "initial state" is the copy's starting value).

    Args:
        base_layer: The linear layer to copy; its own parameters are frozen.
        dtype: Dtype of the copy (default: the base dtype, float32 over half precision).

    Attributes:
        modules_to_save: The trainable copy (weight and bias, if any).
    """

    def __init__(self, base_layer: nn.Linear, dtype: torch.dtype | None = None) -> None:
        super().__init__(base_layer)
        w = base_layer.weight
        copy = nn.Linear(
            self.in_features,
            self.out_features,
            bias=base_layer.bias is not None,
            device=w.device,
            dtype=dtype or default_adapter_dtype(w.dtype),
        )
        with torch.no_grad():
            copy.weight.copy_(w)
            if base_layer.bias is not None:
                copy.bias.copy_(base_layer.bias)
        self.modules_to_save = copy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The copy's output, in the input's dtype."""
        return self.modules_to_save(x.to(self.modules_to_save.weight.dtype)).to(x.dtype)


def wrap_modules_to_save(
    model: nn.Module, target_modules: list[str], module_filter: str | None = None
) -> list[str]:
    """Make targeted linear layers trainable in full (:class:`ModulesToSaveLinear`).

    Afterwards every adapter parameter of the model is trainable and all else frozen.

    Args:
        model: The model to modify in place.
        target_modules: Leaf names, e.g. ``["linear_1", "linear_2"]``.
        module_filter: Optional regex on full dotted names, e.g. ``"multi_modal_projector"``.

    Returns:
        The sorted dotted names of the wrapped modules.
    """
    replaced = replace_linear_layers(
        model, target_modules, lambda _n, lin: ModulesToSaveLinear(lin), module_filter
    )
    freeze_non_adapter(model)
    return replaced
