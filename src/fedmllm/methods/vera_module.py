"""VeRA as a LoRA-family method: shared frozen random A/B from a seed, trained vectors d, b.

Everything but the layer kind is :class:`~fedmllm.methods.lora_module.LoRAMethod`'s (the
sharing rule, FedProx/SCAFFOLD add-ons). The groups are ``d`` (every ``vera_lambda_d``),
``b`` (every ``vera_lambda_b``) and ``other``; with ``share="all"`` they all travel. The
projections never travel: every client and the server regenerate them from
``projection_seed`` (:meth:`server_constants` hands the server its copy for FedA²).
"""

from __future__ import annotations

from typing import Any

from fedmllm import compat
from fedmllm.lora import inject_lora
from fedmllm.lora.vera import B_SUFFIX, D_SUFFIX, VeRALinear, target_linears, vera_projections
from fedmllm.methods.lora_module import OTHER, LoRAMethod
from fedmllm.types import AdapterState

GROUP_D, GROUP_B = "d", "b"


class VeRAMethod(LoRAMethod):
    """VeRA on the engine's target modules (``method=vera``).

    Args:
        engine: The shared engine.
        target_modules: Leaf names of the linear layers to adapt.
        module_filter: Regex a module's full name must match.
        r: Rank of the shared projections (VeRA uses large ranks: 256 in the paper).
        projection_seed: Seed of the shared frozen A and B (the same on every client).
        d_initial: Initial value of ``d`` (the paper's 0.1).
        dropout: Dropout on the adapter input.
        **kwargs: :class:`LoRAMethod`'s (``share``, ``name``, add-ons, ...); ``alpha`` and
            ``use_rslora`` do not apply (VeRA has no alpha/r scaling) and ``client_ranks``
            is refused.
    """

    def __init__(
        self,
        engine: Any,
        target_modules: list[str],
        module_filter: str | None = "language_model",
        r: int = 64,
        projection_seed: int = 0,
        d_initial: float = 0.1,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("client_ranks"):
            raise ValueError("method=vera does not support method.client_ranks (one r for all)")
        if r <= 0:
            raise ValueError(f"method.r must be positive for VeRA, got {r}")
        # Read by _inject, which LoRAMethod.__init__ calls.
        self.projection_seed, self.d_initial = int(projection_seed), float(d_initial)
        self._constants: AdapterState = {}
        kwargs.setdefault("name", "vera")
        super().__init__(engine, target_modules, module_filter, r=r, dropout=dropout, **kwargs)
        if self.share == "all":
            self.shared_groups = frozenset({GROUP_D, GROUP_B, OTHER})

    def _inject(
        self, target_modules: list[str], module_filter: str | None, factory: Any = None
    ) -> list[str]:
        """Draw the shared projections at the widest target shape, then wrap every target."""
        linears = target_linears(self.model, target_modules, module_filter)
        if not linears:  # let inject_lora name the available modules
            return inject_lora(self.model, target_modules, module_filter=module_filter)
        max_in = max(m.in_features for _, m in linears)
        max_out = max(m.out_features for _, m in linears)
        vera_a, vera_b = vera_projections(self.projection_seed, self.r, max_in, max_out)

        def make(name: str, linear: Any) -> VeRALinear:
            layer = VeRALinear(linear, vera_a, vera_b, self.dropout, self.d_initial)
            self._constants[f"{name}.vera_A"] = layer.vera_A.detach().cpu()
            self._constants[f"{name}.vera_B"] = layer.vera_B.detach().cpu()
            return layer

        return inject_lora(
            self.model, target_modules, module_filter=module_filter, layer_factory=make
        )

    def group_of(self, key: str) -> str:
        """``d``, ``b`` or ``other``."""
        if key.endswith(D_SUFFIX):
            return GROUP_D
        return GROUP_B if key.endswith(B_SUFFIX) else OTHER

    def vera_layers(self) -> list[tuple[str, VeRALinear]]:
        """The injected VeRA layers with their dotted names."""
        return [(n, m) for n, m in self.model.named_modules() if isinstance(m, VeRALinear)]

    def server_constants(self) -> AdapterState:
        """Each layer's frozen ``A``/``B`` slice (``<module>.vera_A``/``.vera_B``): public (from
        the seed), never sent; the FedA² rule needs them to solve for ``b``."""
        return dict(self._constants)

    def offers(self) -> frozenset[str]:
        """LoRA's words, plus ``paired`` when every shared ``d`` travels with its ``b``."""
        words = set(super().offers())
        shared = self.shared_keys(self.adapter_state())
        d = {k[: -len(D_SUFFIX)] for k in shared if k.endswith(D_SUFFIX)}
        b = {k[: -len(B_SUFFIX)] for k in shared if k.endswith(B_SUFFIX)}
        if d and d == b:
            words.add(compat.PAIRED)
        return frozenset(words)
