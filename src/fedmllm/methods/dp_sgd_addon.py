"""DP-SGD as an add-on to any method's local training (``privacy=dp_sgd``).

The add-on replaces the local step's backward: each sample of the step's micro-batches is run
alone through the family's own step loss (task loss + family regulariser + other add-ons'
terms), its gradient over the parameters that train this step is taken with
``torch.autograd.grad`` — exact per-sample gradients for every adapter family, routers and
experts included — and ``fedmllm.privacy.dp_sgd.private_gradient`` clips, sums and noises them.
The optimiser then steps on that gradient (post-processing). The client's count of DP steps is
a private tensor (``dp_sgd.steps``: stored with the client, never sent), from which Opacus's
RDP accountant gives its ε after every local update (metric ``dp_epsilon``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from fedmllm.methods.addons import LocalAddon, Params
from fedmllm.privacy.accountant import epsilon, noise_for_epsilon
from fedmllm.privacy.dp_sgd import batch_size_of, one_sample, private_gradient
from fedmllm.privacy.settings import PrivacyConfig
from fedmllm.types import AdapterState

if TYPE_CHECKING:
    from fedmllm.methods.base import AdapterMethod

STEPS_KEY = "dp_sgd.steps"


class DPSGD(LocalAddon):
    """Per-sample clipping and Gaussian noise in the local step, with a per-client accountant.

    Args:
        config: The run's privacy settings (``clip`` C, σ or a target ε, δ).
        train_sizes: Client id -> train-set size n_k (sampling rate q_k = B / n_k).
        batch_size: Samples per optimiser step B (batch size × gradient accumulation).
        planned_steps: Local steps a client takes if it trains every round (σ for a target ε).
    """

    def __init__(
        self,
        config: PrivacyConfig,
        train_sizes: Mapping[str, int],
        batch_size: int,
        planned_steps: int,
    ) -> None:
        self.config = config
        self.train_sizes = dict(train_sizes)
        self.batch_size = int(batch_size)
        self.planned_steps = int(planned_steps)
        self.steps = 0
        self.client_id: str | None = None
        self._params: Params = {}
        self._noise: dict[str, float] = {}

    # ------------------------------------------------------------------ state
    def owns(self, key: str) -> bool:
        return key == STEPS_KEY

    def extra_state(self) -> AdapterState:
        return {STEPS_KEY: torch.tensor(float(self.steps), dtype=torch.float64)}

    def load_extra_state(self, state: AdapterState) -> None:
        if STEPS_KEY in state:
            self.steps = int(state[STEPS_KEY].item())

    def set_client(self, client_id: str) -> None:
        """The client whose turn it is (its sampling rate and σ)."""
        if client_id not in self.train_sizes:
            raise KeyError(f"privacy=dp_sgd: no train-set size for client {client_id!r}")
        self.client_id = client_id

    # ------------------------------------------------------------------ accounting
    @property
    def sample_rate(self) -> float:
        """q_k = B / n_k of the current client."""
        assert self.client_id is not None, "set_client first"
        return min(1.0, self.batch_size / max(1, self.train_sizes[self.client_id]))

    @property
    def noise_multiplier(self) -> float:
        """σ of the current client (derived from the target ε for its q_k if one is set)."""
        cfg = self.config
        if cfg.target_epsilon is None:
            return cfg.noise_multiplier
        assert self.client_id is not None, "set_client first"
        if self.client_id not in self._noise:
            self._noise[self.client_id] = noise_for_epsilon(
                cfg.target_epsilon, self.sample_rate, self.planned_steps, cfg.delta
            )
        return self._noise[self.client_id]

    def epsilon(self) -> float:
        """The current client's ε at δ after all its DP steps so far."""
        return epsilon(self.noise_multiplier, self.sample_rate, self.steps, self.config.delta)

    # ------------------------------------------------------------------ the step
    def begin_local(self, params: Params) -> None:
        self._params = dict(params)

    def train_step(
        self,
        method: AdapterMethod,
        fabric: Any,
        micro: list[dict[str, Any]],
        step: int,
        optimizer: Any,
    ) -> float:
        """Set the optimiser's gradients to the private gradient of ``micro``; the mean task
        loss over its samples."""
        from fedmllm.methods.local_loop import step_loss  # the family's loss, one sample

        optimizer.zero_grad(set_to_none=True)
        live = [p for p in self._params.values() if p.requires_grad]
        per_sample, losses = [], []
        for batch in micro:
            n = batch_size_of(batch)
            for i in range(n):
                total, loss = step_loss(method, fabric, one_sample(batch, i, n), step)
                grads = torch.autograd.grad(total, live, allow_unused=True)
                per_sample.append(
                    [
                        torch.zeros_like(p) if g is None else g
                        for p, g in zip(live, grads, strict=True)
                    ]
                )
                losses.append(loss)
        noisy = private_gradient(
            per_sample, self.config.clip, self.noise_multiplier, self.batch_size
        )
        for p, g in zip(live, noisy, strict=True):
            p.grad = g.to(p.dtype)
        return sum(losses) / len(losses)

    def after_step(self, lr: float) -> None:
        self.steps += 1

    def metrics(self) -> dict[str, float]:
        return {"dp_epsilon": self.epsilon(), "dp_noise_multiplier": self.noise_multiplier}
