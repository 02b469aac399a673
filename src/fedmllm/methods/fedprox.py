"""FedProx: FedAvg plus a proximal pull towards the round's global adapter.

Local loss ``f(θ) + (μ/2)·Σ‖θ − θ_global‖²`` over the trainable parameters. θ_global is
snapshotted (detached) once when local training starts — the moment the simulator has just
loaded the global state — while θ stays the live parameter, so the term has the gradient
``μ(θ − θ_global)``. (Built from detached copies of the *current* parameters, as some public
code does, it is a constant with no gradient at all.)
"""

from __future__ import annotations

from typing import Any

import torch

from fedmllm.methods.lora_module import LoRAMethod


def proximal_term(
    params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], mu: float
) -> torch.Tensor:
    """``(μ/2)·Σ_k ‖params[k] − anchor[k]‖²`` (differentiable in ``params``).

    Raises:
        KeyError: ``params`` and ``anchor`` name different tensors.
    """
    if set(params) != set(anchor):
        missing = sorted(set(params).symmetric_difference(anchor))[:3]
        raise KeyError(f"proximal term: parameters and anchor differ, e.g. {missing}")
    total = sum((params[k] - anchor[k]).pow(2).sum() for k in params)
    return 0.5 * mu * total


class FedProxMethod(LoRAMethod):
    """FedAvg-LoRA with the FedProx proximal term (Li et al., 2020).

    Args:
        mu: Proximal coefficient μ (0.01 in the papers' comparisons; 0 is FedAvg).
        **kwargs: As :class:`LoRAMethod`.
    """

    def __init__(self, *args: Any, mu: float = 0.01, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if mu < 0:
            raise ValueError(f"FedProx mu must be >= 0, got {mu}")
        self.mu = mu
        self._params: dict[str, torch.nn.Parameter] = {}
        self._anchor: dict[str, torch.Tensor] = {}

    def begin_local(self, optimizer: torch.optim.Optimizer, num_steps: int) -> None:
        self._params = self.trainable_parameters()
        self._anchor = {k: p.detach().clone() for k, p in self._params.items()}

    def local_loss(self, batch: dict[str, Any], step: int) -> torch.Tensor:
        loss = self.training_step(batch, step)
        if self.mu == 0:
            return loss
        return loss + proximal_term(self._params, self._anchor, self.mu)
