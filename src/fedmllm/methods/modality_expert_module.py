"""``method=modality_expert``: X-FLoRA's modality-expert LoRA (METHODS.md).

Every LLM target layer holds one LoRA expert per modality of the benchmark (and optionally a
shared expert); each sample goes through its modality's expert (hard routing by its tag). A
client trains, and sends, only the experts of the modalities in its batches (plus the shared
expert and any other adapter its data reaches); with it go the fractions of its samples per
modality, ``modality_frac/<m>`` in the update's metrics, from which the ``expert_aware``
server weights each expert. Encoder LoRA, a trainable projector and UniFLoW's stage schedule
are inherited from :class:`MultimodalLoRAMethod`.

Training batches from the engine's collator carry no modality tags, so the method wraps that
collator once (:class:`ModalityTaggedCollator`); generation batches carry their ``samples``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch

from fedmllm import compat
from fedmllm.lora.modality_expert import (
    ModalityExpertLinear,
    check_modalities,
    expert_modality,
    modality_routing,
)
from fedmllm.methods.multimodal_module import MultimodalLoRAMethod

MODALITIES_KEY = "modalities"


class ModalityTaggedCollator:
    """A training collator whose batches also list each sample's modality tag.

    Args:
        inner: The engine's collator.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, samples: Sequence[Any]) -> dict[str, Any]:
        batch = self.inner(samples)
        batch[MODALITIES_KEY] = [s.modality for s in samples]
        return batch


def batch_modalities(batch: dict[str, Any]) -> list[str]:
    """Modality tag of each row of a training or generation batch."""
    if MODALITIES_KEY in batch:
        return list(batch[MODALITIES_KEY])
    if "samples" in batch:
        return [s.modality for s in batch["samples"]]
    raise KeyError(
        f"batch has neither {MODALITIES_KEY!r} (training collator wrapped by "
        "ModalityExpertMethod) nor 'samples' (generation collator): cannot route its rows"
    )


class ModalityExpertMethod(MultimodalLoRAMethod):
    """Modality-expert LoRA on the LLM's target layers.

    Args:
        engine: The shared engine.
        modalities: One expert per tag, e.g. ``[ct, mri, xray, us]`` (``${benchmark.modalities}``);
            a sample whose tag is not listed is an error.
        target_modules: Leaf names of the LLM linears that get experts.
        shared_expert: Add an expert every sample uses, averaged over all clients.
        experts_in_encoder: Put modality experts (instead of plain LoRA) on the encoder targets.
        name: The method's name in logs and results.
        **kwargs: Everything :class:`MultimodalLoRAMethod` takes (rank, encoder LoRA,
            projector, stage schedule, share, ...).
    """

    NEEDS = frozenset({compat.PARTIAL_UPDATES})

    def __init__(
        self,
        engine: Any,
        modalities: Sequence[str],
        target_modules: list[str],
        shared_expert: bool = False,
        experts_in_encoder: bool = False,
        name: str = "modality_expert",
        **kwargs: Any,
    ) -> None:
        # Read by the injection hooks, which the parent constructor calls.
        self.modalities = check_modalities(modalities)
        self.shared_expert = shared_expert
        self.experts_in_encoder = experts_in_encoder
        super().__init__(engine, list(target_modules), name=name, **kwargs)
        if not isinstance(engine.collator, ModalityTaggedCollator):
            engine.collator = ModalityTaggedCollator(engine.collator)
        self._counts: dict[str, int] = {}

    def _layer_factory(self, dropout: float) -> Any:
        """Modality experts instead of plain LoRA on the LLM's targets."""

        def factory(_name: str, linear: torch.nn.Linear) -> ModalityExpertLinear:
            return ModalityExpertLinear(
                linear, self.modalities, self.r, self.alpha, dropout, self.use_rslora,
                self.shared_expert,
            )  # fmt: skip

        return factory

    def _inject_encoder(self, targets: list[str], module_filter: str | None) -> list[str]:
        if not self.experts_in_encoder:
            return super()._inject_encoder(targets, module_filter)
        return self._inject(targets, module_filter, self._layer_factory(self.dropout))

    def forward_context(self, batch: dict[str, Any]) -> AbstractContextManager[Any]:
        """Route each row through its modality's expert."""
        return modality_routing(self.model, batch_modalities(batch))

    def begin_local(self, num_steps: int) -> None:
        super().begin_local(num_steps)
        self._counts = {}

    def groups_reached(self, batch: dict[str, Any]) -> frozenset[str]:
        reach = super().groups_reached(batch)
        for m in batch_modalities(batch):
            self._counts[m] = self._counts.get(m, 0) + 1
        return reach

    def local_metrics(self) -> dict[str, float]:
        # Fractions, not counts: the server multiplies by the client's n_k, so a client that
        # holds one modality weighs its expert by exactly its dataset size.
        total = sum(self._counts.values())
        return {f"modality_frac/{m}": c / total for m, c in sorted(self._counts.items())}

    def was_reached(self, key: str) -> bool:
        """As the parent's, and an expert only if its modality was in the client's batches."""
        if not super().was_reached(key):
            return False
        modality = expert_modality(key)
        return modality is None or self._reached is None or modality in self._counts
