"""FedDPA-LoRA (Long et al., 2024): a global adapter (averaged) and a local one (private).

Local training, each round: first the local adapter with the global one frozen (the layer
mixes them at the fixed weight ``w``), then the global adapter alone with the local one
frozen (so what is averaged is a generic adapter, not a residual of a private one). Only the
global pair travels.

Inference: ``W0x + w·ΔW_g x + (1 − w)·ΔW_l x``. With ``mix="instance"`` each prompt gets its
own ``w``: the local weight ``1 − w`` is the mean of the ``top_k`` cosine similarities
between the prompt's representation and the representations of the client's local training
samples (clipped to [0, 1]), so a prompt like the client's own data leans on the local
adapter. A representation is the mean frozen input embedding of the prompt's text tokens
(image placeholders and answer tokens excluded) — cheap, and the base never changes it. The
weights are set on every layer *before* generation starts, so they act inside each decoding
step of their own row.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from fedmllm.lora.dual import DualLoRALinear
from fedmllm.methods.lora_module import LoRAMethod
from fedmllm.types import AdapterState

REPS_KEY = "feddpa.local_reps"
LOCAL = "local_lora_"
LOCAL_GROUP, GLOBAL = "local", "global"
MIX_MODES = ("instance", "fixed")


def instance_weights(
    queries: torch.Tensor, memory: torch.Tensor, top_k: int, fallback: float
) -> torch.Tensor:
    """Global-adapter weight per query row: ``1 − clip(mean top-k cosine similarity, 0, 1)``.

    Args:
        queries: (n, d) representations of the prompts.
        memory: (m, d) representations of the client's local training samples.
        top_k: How many nearest training samples to average.
        fallback: The weight for every row when ``memory`` is empty.
    """
    if memory.shape[0] == 0:
        return torch.full((queries.shape[0],), float(fallback))
    sims = F.normalize(queries.float(), dim=-1) @ F.normalize(memory.float(), dim=-1).T
    k = min(top_k, memory.shape[0])
    local = sims.topk(k, dim=-1).values.mean(dim=-1).clamp(0.0, 1.0)
    return 1.0 - local


class FedDPAMethod(LoRAMethod):
    """Dual-adapter LoRA; pair with ``aggregator=fedavg`` (it averages the global pair).

    Args:
        local_fraction: Share of each round's local steps spent on the local adapter
            (the rest trains the global one).
        mix: ``"instance"`` (per-prompt weight from similarity) or ``"fixed"``.
        fixed_w: The global weight ``w`` for training the local adapter and for ``mix="fixed"``
            (also the fallback before a client has trained).
        top_k: Nearest local samples averaged for the instance-wise weight.
        max_reps: Local training representations kept per client (the most recent).
        **kwargs: As :class:`LoRAMethod`.
    """

    def __init__(
        self,
        *args: Any,
        local_fraction: float = 0.5,
        mix: str = "instance",
        fixed_w: float = 0.5,
        top_k: int = 5,
        max_reps: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.share != "all" or self.client_ranks is not None:
            raise ValueError("FedDPA needs method.share='all' and no method.client_ranks")
        if mix not in MIX_MODES or not 0.0 <= fixed_w <= 1.0 or not 0.0 <= local_fraction <= 1:
            raise ValueError(
                f"FedDPA: mix must be one of {MIX_MODES} (got {mix!r}), fixed_w and "
                f"local_fraction in [0, 1] (got {fixed_w}, {local_fraction})"
            )
        self.local_fraction, self.mix, self.fixed_w = local_fraction, mix, fixed_w
        self.top_k, self.max_reps = top_k, max_reps
        dim = self.model.get_input_embeddings().weight.shape[1]
        self._reps = torch.zeros(0, dim)
        for layer in self.dual_layers():
            layer.mix = fixed_w
        self.shared_groups = frozenset({GLOBAL})

    def _layer_factory(self, dropout: float) -> Any:
        def factory(_name: str, linear: torch.nn.Linear) -> DualLoRALinear:
            return DualLoRALinear(linear, self.r, self.alpha, dropout, self.use_rslora)

        return factory

    def dual_layers(self) -> list[DualLoRALinear]:
        return [m for m in self.model.modules() if isinstance(m, DualLoRALinear)]

    def group_of(self, key: str) -> str:
        """``local`` (the private pair) or ``global`` (the averaged pair)."""
        return LOCAL_GROUP if LOCAL in key else GLOBAL

    # ------------------------------------------------------------------ state
    def extra_state(self) -> AdapterState:
        return {REPS_KEY: self._reps.clone()}

    def owns_extra(self, key: str) -> bool:
        return key == REPS_KEY

    def load_extra_state(self, state: AdapterState) -> None:
        if REPS_KEY in state:
            self._reps = state[REPS_KEY].detach().to("cpu", torch.float32, copy=True)

    # ------------------------------------------------------------------ phases
    def trainable_groups(
        self, step: int, num_steps: int, round_idx: int, num_rounds: int
    ) -> frozenset[str]:
        """The local adapter for the first ``local_fraction`` of the steps, then the global."""
        return frozenset({LOCAL_GROUP if step < round(self.local_fraction * num_steps) else GLOBAL})

    def set_trainable(self, groups: frozenset[str]) -> None:
        """Train ``groups`` and mix accordingly: the local adapter beside the frozen global one
        at ``fixed_w``; the global adapter alone (weight 1)."""
        super().set_trainable(groups)
        if len(groups) == 1:
            mix = self.fixed_w if LOCAL_GROUP in groups else 1.0
            for layer in self.dual_layers():
                layer.mix = mix

    def local_loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        self._remember(self.represent(batch))
        return super().local_loss(batch, step)

    def end_local(self) -> None:
        for layer in self.dual_layers():
            layer.mix = self.fixed_w

    # ------------------------------------------------------------------ mixing
    @torch.no_grad()
    def represent(self, batch: dict[str, Any]) -> torch.Tensor:
        """(n, d) mean frozen input embedding of each row's prompt text tokens."""
        ids = batch["input_ids"]
        mask = batch["attention_mask"].bool()
        if "labels" in batch:  # training batches: leave the answer out
            mask = mask & (batch["labels"] == -100)
        image_id = getattr(self.model.config, "image_token_id", None)
        if image_id is not None:
            mask = mask & (ids != image_id)
        emb = self.model.get_input_embeddings()(ids).float()
        m = mask.unsqueeze(-1).to(emb.dtype)
        return ((emb * m).sum(1) / m.sum(1).clamp(min=1.0)).cpu()

    def _remember(self, reps: torch.Tensor) -> None:
        self._reps = torch.cat([self._reps, reps])[-self.max_reps :]

    @torch.no_grad()
    def predict(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        if self.mix == "fixed":
            weights: float | torch.Tensor = self.fixed_w
        else:
            weights = instance_weights(self.represent(batch), self._reps, self.top_k, self.fixed_w)
        return self.generate_with_mix(batch, max_new_tokens, weights)

    @torch.no_grad()
    def generate_with_mix(
        self, batch: dict[str, Any], max_new_tokens: int, weights: float | torch.Tensor
    ) -> list[str]:
        """Generate with the global weight ``weights`` (a float or one per row) in every layer."""
        for layer in self.dual_layers():
            layer.mix = weights
        try:
            return self.engine.generate(batch, max_new_tokens)
        finally:
            for layer in self.dual_layers():
                layer.mix = self.fixed_w
