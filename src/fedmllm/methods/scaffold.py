"""SCAFFOLD on LoRA parameters (Karimireddy et al., 2020, option II).

Control variates: the server's ``c`` arrives as the round's broadcast extras; the client's
own ``c_k`` is private (kept in the client store under ``scaffold_c_k.<key>`` and checkpointed
with it). Both start at zero. After every local optimiser step
``θ ← θ − η_i (c − c_k)``; after the round ``c_k⁺ = c_k − c + (x − y_k) / Σ_i η_i`` (x: the
global parameters the client started from, y_k: where it ended), and ``Δc_k = c_k⁺ − c_k``
goes up in ``ClientUpdate.extras``. With a constant rate ``Σ_i η_i = K·η``, the paper's
formula; with the run's cosine schedule the sum is the exact generalisation.
"""

from __future__ import annotations

from typing import Any

import torch

from fedmllm.methods.lora_module import LoRAMethod
from fedmllm.types import AdapterState

CK_PREFIX = "scaffold_c_k."


def next_client_control(
    c_k: torch.Tensor, c: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr_sum: float
) -> torch.Tensor:
    """SCAFFOLD option II: ``c_k − c + (x − y) / Σ η``."""
    return c_k - c + (x - y) / lr_sum


class ScaffoldMethod(LoRAMethod):
    """FedAvg-LoRA with SCAFFOLD's drift correction; pair with ``aggregator=scaffold``.

    Args:
        **kwargs: As :class:`LoRAMethod` (every adapter tensor is shared; one rank for all).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.share != "all":
            raise ValueError("SCAFFOLD shares every LoRA tensor: method.share must be 'all'")
        if self.client_ranks is not None:
            raise ValueError("SCAFFOLD does not support method.client_ranks (one rank for all)")
        self._c_k: AdapterState = {
            k: torch.zeros(p.shape, dtype=torch.float32)
            for k, p in self.trainable_parameters().items()
        }
        self._c: AdapterState = {}
        self._params: dict[str, torch.nn.Parameter] = {}
        self._x: AdapterState = {}
        self._diff: dict[str, torch.Tensor] = {}
        self._delta_c: AdapterState = {}

    # ------------------------------------------------------------------ state
    def adapter_state(self) -> AdapterState:
        state = super().adapter_state()
        state.update({CK_PREFIX + k: v.clone() for k, v in self._c_k.items()})
        return state

    def load_adapter_state(self, state: AdapterState) -> None:
        c_k = {k[len(CK_PREFIX) :]: v for k, v in state.items() if k.startswith(CK_PREFIX)}
        super().load_adapter_state({k: v for k, v in state.items() if not k.startswith(CK_PREFIX)})
        if c_k:
            self._c_k = self._checked(c_k, "client control variate c_k")

    def _checked(self, controls: AdapterState, what: str) -> AdapterState:
        params = self.trainable_parameters()
        unknown = sorted(set(controls) - set(params))
        if unknown:
            raise KeyError(f"SCAFFOLD {what} has keys that are not trainable: {unknown[:3]}")
        for k, v in controls.items():
            if tuple(v.shape) != tuple(params[k].shape):
                raise ValueError(f"SCAFFOLD {what} {k!r}: shape {tuple(v.shape)}")
        return {k: v.detach().to("cpu", torch.float32, copy=True) for k, v in controls.items()}

    def shared_keys(self, state: AdapterState) -> list[str]:
        return sorted(k for k in state if not k.startswith(CK_PREFIX))

    def private_keys(self, state: AdapterState) -> list[str]:
        return sorted(k for k in state if k.startswith(CK_PREFIX))

    def begin_client(self, client_id: str, extras: AdapterState) -> None:
        super().begin_client(client_id, extras)
        self._c = self._checked(extras, "server control variate c")

    def client_extras(self) -> AdapterState:
        return dict(self._delta_c)

    def client_extras_shapes(self, shared: AdapterState) -> dict[str, tuple[int, ...]]:
        # Δc_k has one entry per trainable tensor, and every trainable tensor is shared.
        return {k: tuple(v.shape) for k, v in shared.items()}

    # ------------------------------------------------------------------ local loop
    def begin_local(self, optimizer: torch.optim.Optimizer, num_steps: int) -> None:
        params = self._params = self.trainable_parameters()
        self._x = {k: p.detach().to("cpu", torch.float32, copy=True) for k, p in params.items()}
        zero = torch.zeros(())
        self._diff = {
            k: (self._c.get(k, zero) - self._c_k[k]).to(p.device, p.dtype)
            for k, p in params.items()
        }
        self._delta_c = {}

    @torch.no_grad()
    def after_local_step(self, step: int, lr: float) -> None:
        for k, p in self._params.items():
            p.sub_(lr * self._diff[k])

    def end_local(self, num_steps: int, lr_sum: float) -> None:
        if num_steps == 0 or lr_sum <= 0:
            self._delta_c = {k: torch.zeros_like(v) for k, v in self._c_k.items()}
            return
        zero = torch.zeros(())
        new_c_k = {}
        for k, p in self._params.items():
            y = p.detach().to("cpu", torch.float32)
            c = self._c.get(k, zero)
            new_c_k[k] = next_client_control(self._c_k[k], c, self._x[k], y, lr_sum)
        self._delta_c = {k: new_c_k[k] - self._c_k[k] for k in new_c_k}
        self._c_k = new_c_k
