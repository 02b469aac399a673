"""FedMRG (Jin et al., 2025; seed 003): federated report generation under dual heterogeneity.

One subclass of :class:`MultimodalLoRAMethod` (LoRA in the vision tower and the decoder); four
parts, each switchable for ablation (docs/methods.md, "FedMRG", states every choice):

1. **Low-rank exchange** (``exchange_rank``): every shared LoRA pair travels as the best
   rank-``k`` factors of its product ``B A`` (truncated SVD at the end of the local update), and
   is aggregated as a product (``aggregator=flexlora``: ``Σ p_k B_k A_k`` then SVD), not factor
   by factor. Each round the client tops the received rank-``k`` pair up to rank ``r`` with
   fresh directions (new A rows, zero B columns: the product is unchanged), so the local update
   can leave the received subspace. ``None``: plain rank-``r`` factors (pair with fedavg).
2. **Client-aware contrastive learning** on the vision tower's LoRA
   (:func:`~fedmllm.methods.fedmrg_parts.client_aware_contrastive`), weight
   ``contrastive_weight``, with diagnosis prototypes aggregated by the server.
3. **Diagnosis-driven prompts** (``diagnosis_prompt``): a light head on pooled image features
   predicts kind presence and lesion count (trained with ``diagnosis_weight``); its prediction
   is written as text (``"two lesions: cyst, tumor."``) right before the answer, in training
   and generation alike.
4. **Dual adapters in the decoder** (``dual_adapter``): a generic pair (aggregated) and a
   specialised pair (private) in every decoder target. Mutual boosting (``mutual``):
   ``gate_kd`` — a learned private mix ``w = sigmoid(θ)`` per layer (the specialised adapter
   learns the residual of the site over the generic one) plus distillation of the mixed model
   into the generic path alone (``kd_weight``: KL on answer tokens), so the generic adapter
   that travels carries what the specialised one learned; ``fixed`` — ``w = mix_init``, no KD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from fedmllm.lora.dual import GatedDualLoRALinear
from fedmllm.lora.layers import LoRALinear
from fedmllm.lora.rank import A_SUFFIX, B_SUFFIX, pad_rank, truncate_rank
from fedmllm.methods.base import AdapterMethod
from fedmllm.methods.fedmrg_parts import (
    KINDS,
    NUM_CLASSES,
    DiagnosisHead,
    client_aware_contrastive,
    diagnosis_class,
    diagnosis_labels,
    diagnosis_text,
    insert_tokens,
    truncated_factors,
)
from fedmllm.methods.multimodal_module import MultimodalLoRAMethod
from fedmllm.metrics.findings import load_lexicon
from fedmllm.protocol import FederatedMethod
from fedmllm.types import AdapterState

HEAD, LOCAL = "head", "local"
LABELS_KEY = "diag_labels"
MUTUAL_MODES = ("gate_kd", "fixed")
_EXCHANGED = frozenset({"encoder", "llm"})


class _LabelledCollator:
    """The engine's training collator, plus ``diag_labels`` read off each sample's report."""

    def __init__(self, inner: Any, lexicon: dict[str, dict[str, str]]) -> None:
        self.inner, self.lexicon = inner, lexicon

    def __call__(self, samples: Sequence[Any]) -> dict[str, Any]:
        batch = self.inner(samples)
        batch[LABELS_KEY] = diagnosis_labels([s.answer for s in samples], self.lexicon)
        return batch


class FedMRGMethod(MultimodalLoRAMethod):
    """FedMRG; pair with ``aggregator=flexlora`` (``fedavg`` when ``exchange_rank`` is None).

    Args:
        engine, target_modules, encoder_target_modules, ...: As :class:`MultimodalLoRAMethod`.
        exchange_rank: Rank of the exchanged factors (≤ r), or None for plain factors.
        contrastive_weight: Weight of the client-aware contrastive loss (0: off).
        tau: Its temperature.
        site_weight: β of its site term.
        proto_momentum: Share of the client's batch means in its new prototypes.
        diagnosis_prompt: Put the head's prediction into the decoder prompt.
        diagnosis_weight: Weight of the head's loss (0 with no prompt and no contrast: no head).
        dual_adapter: Generic + specialised adapters in the decoder (False: generic only).
        mutual: ``gate_kd`` or ``fixed`` (see the module docstring).
        kd_weight: Weight of the distillation into the generic path (``gate_kd``).
        mix_init: Initial (``gate_kd``) or fixed (``fixed``) weight of the generic adapter.
        lexicon: The findings lexicon the diagnosis labels are read with.
        name: The method's name in logs and results.
        **kwargs: :class:`MultimodalLoRAMethod`'s.
    """

    probes_paths = False

    def __init__(
        self,
        engine: Any,
        target_modules: list[str],
        exchange_rank: int | None = 4,
        contrastive_weight: float = 0.1,
        tau: float = 0.5,
        site_weight: float = 0.1,
        proto_momentum: float = 0.5,
        diagnosis_prompt: bool = True,
        diagnosis_weight: float = 0.5,
        dual_adapter: bool = True,
        mutual: str = "gate_kd",
        kd_weight: float = 0.5,
        mix_init: float = 0.5,
        lexicon: str = "mrg_synth",
        name: str = "fedmrg",
        **kwargs: Any,
    ) -> None:
        if mutual not in MUTUAL_MODES or not 0.0 <= mix_init <= 1.0:
            raise ValueError(
                f"method.mutual must be one of {MUTUAL_MODES} (got {mutual!r}) and "
                f"method.mix_init in [0, 1] (got {mix_init})"
            )
        self._dual_cfg = (dual_adapter, mutual, mix_init)  # read by _layer_factory
        super().__init__(engine, target_modules, name=name, **kwargs)
        if exchange_rank is not None and not 1 <= exchange_rank <= self.r:
            raise ValueError(f"method.exchange_rank must lie in [1, r={self.r}] or be null")
        if self.client_ranks is not None or self.schedule is not None:
            raise ValueError("FedMRG takes no method.client_ranks and no method.stage_schedule")
        self.exchange_rank = exchange_rank
        self.contrastive_weight, self.tau, self.site_weight = contrastive_weight, tau, site_weight
        self.proto_momentum = proto_momentum
        self.diagnosis_prompt, self.diagnosis_weight = diagnosis_prompt, diagnosis_weight
        self.dual_adapter, self.mutual, self.kd_weight = dual_adapter, mutual, kd_weight
        self.shared_groups = (
            frozenset({"encoder", "projector", "llm", HEAD}) if self.share == "all" else frozenset()
        )
        self.vision = self._vision_tower()
        self.head: DiagnosisHead | None = None
        if diagnosis_prompt or diagnosis_weight > 0 or contrastive_weight > 0:
            dim = int(self.model.config.vision_config.hidden_size)
            ref = next(self.model.parameters())
            self.head = DiagnosisHead(dim).to(ref.device)
            self.model.fedmrg_head = self.head
            lex = load_lexicon(lexicon)
            if not isinstance(engine.collator, _LabelledCollator):
                engine.collator = _LabelledCollator(engine.collator, lex)
        self._extra: torch.Tensor | None = None
        self._proto_sum = torch.zeros(NUM_CLASSES, 1)
        self._proto_n = torch.zeros(NUM_CLASSES)

    def _layer_factory(self, dropout: float) -> Any:
        dual, mutual, mix_init = self._dual_cfg
        if not dual:
            return None

        def factory(_name: str, linear: torch.nn.Linear) -> GatedDualLoRALinear:
            layer = GatedDualLoRALinear(
                linear, self.r, self.alpha, dropout, self.use_rslora, mix_init=mix_init
            )
            if mutual == "fixed":
                layer.mix_logit.requires_grad_(False)
                layer.mix = float(mix_init)
            return layer

        return factory

    def _vision_tower(self) -> torch.nn.Module:
        for name, module in self.model.named_modules():
            if name.endswith("vision_tower"):
                return module
        raise ValueError("FedMRG needs a model with a module named '*vision_tower' (LLaVA family)")

    # ------------------------------------------------------------------ groups and sharing
    def group_of(self, key: str) -> str:
        """``head``, ``local`` (specialised pair and gate), else encoder/projector/llm."""
        if "fedmrg_head." in key:
            return HEAD
        if "local_lora_" in key or key.endswith("mix_logit"):
            return LOCAL
        return super().group_of(key)

    def sends(self, key: str) -> bool:
        return self.group_of(key) in self.shared_groups

    def keeps(self, key: str) -> bool:
        return self.share == "none" or self.group_of(key) == LOCAL

    # Every group trains at every step and every batch reaches all of them: the plain method
    # layer's behaviour, not MultimodalLoRAMethod's stage schedule and per-side reach.
    received_keys = FederatedMethod.received_keys
    trainable_groups = AdapterMethod.trainable_groups
    groups_reached = AdapterMethod.groups_reached

    # ------------------------------------------------------------------ low-rank exchange
    def _exchanged(self, key: str) -> bool:
        return (
            self.exchange_rank is not None
            and key.endswith((A_SUFFIX, B_SUFFIX))
            and self.group_of(key) in _EXCHANGED
        )

    def _exchanged_layers(self) -> list[LoRALinear]:
        return [
            m
            for n, m in self.model.named_modules()
            if isinstance(m, LoRALinear) and self._exchanged(f"{n}.lora_A.weight")
        ]

    def parameter_state(self) -> AdapterState:
        """Adapter tensors; exchanged pairs at the exchange rank (their first components)."""
        state = super().parameter_state()
        if self.exchange_rank is None:
            return state
        cut = truncate_rank(
            {k: v for k, v in state.items() if self._exchanged(k)}, self.exchange_rank
        )
        return {**state, **cut}

    def load_parameter_state(self, state: AdapterState) -> None:
        """Copy in; exchanged pairs are zero-padded back to rank r."""
        if self.exchange_rank is not None:
            pad = pad_rank({k: v for k, v in state.items() if self._exchanged(k)}, self.r)
            state = {**state, **pad}
        super().load_parameter_state(state)

    @torch.no_grad()
    def begin_local(self, num_steps: int) -> None:
        """Top exchanged pairs up to rank r: fresh A rows, zero B columns (product unchanged)."""
        super().begin_local(num_steps)
        k = self.exchange_rank
        if k is not None and k < self.r:
            for layer in self._exchanged_layers():
                fresh = torch.empty_like(layer.lora_A.weight)
                torch.nn.init.kaiming_uniform_(fresh, a=math.sqrt(5))
                layer.lora_A.weight[k:] = fresh[k:]
                layer.lora_B.weight[:, k:] = 0.0
        self._proto_sum = torch.zeros(NUM_CLASSES, 1)
        self._proto_n = torch.zeros(NUM_CLASSES)

    @torch.no_grad()
    def end_local(self) -> None:
        """Compress exchanged pairs to their best rank-k factors; update the prototypes."""
        super().end_local()
        k = self.exchange_rank
        if k is not None:
            for layer in self._exchanged_layers():
                a, b = layer.lora_A.weight, layer.lora_B.weight
                a_k, b_k = truncated_factors_padded(a, b, k)
                a.copy_(a_k)
                b.copy_(b_k)
        if self.head is not None and self._proto_n.sum() > 0:
            seen = self._proto_n > 0
            mean = self._proto_sum[seen] / self._proto_n[seen, None]
            protos = self.head.prototypes
            old = protos[seen].cpu()
            known = old.norm(dim=1, keepdim=True) > 0
            m = self.proto_momentum
            new = torch.where(known, (1 - m) * old + m * mean, mean)
            protos[seen] = new.to(protos.device, protos.dtype)

    # ------------------------------------------------------------------ the step
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n, d) mean of the vision tower's last hidden states over patches (CLS left out)."""
        out = self.vision(pixel_values=pixel_values)
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return h[:, 1:].mean(1) if h.shape[1] > 1 else h[:, 0]

    def _diagnose(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.head is None or "pixel_values" not in batch:
            return None
        z = self.image_features(batch["pixel_values"])
        return z, self.head(z)

    def _with_prompt(self, batch: dict[str, Any], logits: torch.Tensor) -> dict[str, Any]:
        tok = self.engine.tokenizer
        texts = diagnosis_text(DiagnosisHead.predict(logits.detach()))
        extra = [list(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        return insert_tokens(batch, extra, tok.pad_token_id)

    def training_step(self, batch: dict[str, Any], batch_idx: int = 0) -> torch.Tensor:
        """The language-model loss (the diagnosis labels are not a model input)."""
        inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != LABELS_KEY}
        return self.model(**inputs).loss

    def local_loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        """Task loss on the (diagnosis-prompted) batch; head, contrast and KD go to extra_loss."""
        extra = None
        lm_batch = {k: v for k, v in batch.items() if k != LABELS_KEY}
        diag = self._diagnose(batch)
        if diag is not None:
            z, logits = diag
            labels = batch[LABELS_KEY].to(logits.device)
            extra = self.diagnosis_weight * self.head.loss(logits, labels)
            if self.contrastive_weight > 0:
                extra = extra + self.contrastive_weight * self._contrast(z, labels)
            if self.diagnosis_prompt:
                lm_batch = self._with_prompt(lm_batch, logits)
        out = self.model(**{k: v for k, v in lm_batch.items() if isinstance(v, torch.Tensor)})
        if self.dual_adapter and self.mutual == "gate_kd" and self.kd_weight > 0:
            kd = self._distill(lm_batch, out.logits)
            extra = kd if extra is None else extra + kd
        self._extra = extra
        return out.loss

    def _contrast(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        assert self.head is not None
        classes = diagnosis_class(labels[:, : len(KINDS)])
        protos = self.head.prototypes.detach()
        loss = client_aware_contrastive(z, classes, protos, self.tau, self.site_weight)
        g = F.normalize(z[:, : z.shape[1] // 2].detach().float(), dim=1).cpu()
        if self._proto_sum.shape[1] != g.shape[1]:
            self._proto_sum = torch.zeros(NUM_CLASSES, g.shape[1])
        self._proto_sum.index_add_(0, classes.cpu(), g)
        self._proto_n.index_add_(0, classes.cpu(), torch.ones(len(classes)))
        return loss

    def _distill(self, lm_batch: dict[str, Any], mixed_logits: torch.Tensor) -> torch.Tensor:
        """``kd_weight · KL(p_mixed ‖ p_generic)`` over answer tokens (generic path: w = 1)."""
        layers = [m for m in self.model.modules() if isinstance(m, GatedDualLoRALinear)]
        for layer in layers:
            layer.mix = 1.0
        try:
            inputs = {k: v for k, v in lm_batch.items() if isinstance(v, torch.Tensor)}
            inputs.pop("labels")
            generic = self.model(**inputs).logits
        finally:
            for layer in layers:
                layer.mix = None
        mask = lm_batch["labels"][:, 1:] != -100
        target = F.softmax(mixed_logits[:, :-1][mask].detach().float(), dim=-1)
        log_q = F.log_softmax(generic[:, :-1][mask].float(), dim=-1)
        return self.kd_weight * F.kl_div(log_q, target, reduction="batchmean")

    def extra_loss(self) -> torch.Tensor | None:
        """Head, contrastive and distillation terms of the step just computed."""
        extra, self._extra = self._extra, None
        return extra

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        """Greedy reports, the diagnosis written into the prompt first."""
        if self.diagnosis_prompt:
            diag = self._diagnose(batch)
            if diag is not None:
                batch = self._with_prompt(batch, diag[1])
        return self.engine.generate(batch, max_new_tokens)


def truncated_factors_padded(
    a: torch.Tensor, b: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best rank-``rank`` factors of ``B A`` in the first components, zeros after."""
    a_k, b_k = truncated_factors(a, b, rank)
    a_out, b_out = torch.zeros_like(a), torch.zeros_like(b)
    a_out[:rank], b_out[:, :rank] = a_k, b_k
    return a_out, b_out
