"""FedAdam, FedYogi, FedAdagrad: a server optimiser on the pseudo-gradient of each round.

The moments live in the aggregator and travel with the checkpoint (:meth:`FedOpt.state_dict`).
Defaults are those of Flower's classic strategies (``flwr.server.strategy``), and the tests
check the three rules against them round by round. Bias correction: FedAdam corrects the step
size as Flower's FedAdam does (``bias_correction="flower"``); FedYogi and FedAdagrad do not
correct, as in Flower and in Reddi et al.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from fedmllm import compat
from fedmllm.aggregators.base import Aggregator
from fedmllm.aggregators.functional import (
    client_weights,
    common_keys,
    lora_pairs,
    pair_ranks,
    require_equal_ranks,
    weighted_mean,
)
from fedmllm.aggregators.server_optim import BIAS_CORRECTIONS, server_step, step_size
from fedmllm.types import AdapterState, ClientUpdate

_STATE_KEYS = {"step", "m", "v"}


class FedOpt(Aggregator):
    """Adaptive server optimisation over every shared tensor (LoRA factors included).

    ``Δ = weighted-mean(x_k) − x`` with x the global state handed in; m and v are kept in
    float64 per key and start at zero. LoRA ranks must be equal (the moments are per entry).
    A hyper-parameter left ``None`` takes the rule's default (:attr:`defaults`).

    Args:
        weighting: ``"samples"`` or ``"uniform"``.
        eta: Server learning rate η.
        beta_1: First-moment decay.
        beta_2: Second-moment decay (Adagrad has none: 0).
        tau: Adaptivity floor τ.
        bias_correction: ``"none"``, ``"adam"`` (Kingma & Ba) or ``"flower"`` (Flower's
            FedAdam, whose exponent runs one step ahead); see :func:`step_size`.
    """

    name = "fedopt"
    provides = frozenset({compat.SUM_ONLY})  # Δ needs only the weighted mean
    rule = "adam"
    hyperparameters = ("eta", "beta_1", "beta_2", "tau", "bias_correction")
    defaults: ClassVar[dict[str, Any]] = {
        "eta": 0.1,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-9,
        "bias_correction": "none",
    }

    def __init__(
        self,
        weighting: str = "samples",
        eta: float | None = None,
        beta_1: float | None = None,
        beta_2: float | None = None,
        tau: float | None = None,
        bias_correction: str | None = None,
    ) -> None:
        super().__init__(weighting)
        if self.rule == "adagrad" and beta_2:
            raise ValueError(f"{self.name} keeps no second moment decay; got beta_2={beta_2}")
        given = (eta, beta_1, beta_2, tau, bias_correction)
        for key, value in zip(FedOpt.hyperparameters, given, strict=True):
            setattr(self, key, self.defaults[key] if value is None else value)
        if not self.eta > 0 or not self.tau >= 0:
            raise ValueError(f"need eta > 0 and tau >= 0, got eta={self.eta}, tau={self.tau}")
        if not (0.0 <= self.beta_1 < 1.0 and 0.0 <= self.beta_2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got ({self.beta_1}, {self.beta_2})")
        if self.bias_correction not in BIAS_CORRECTIONS:
            raise ValueError(
                f"bias_correction must be one of {BIAS_CORRECTIONS}, got {self.bias_correction!r}"
            )
        self.step = 0
        self.m: dict[str, torch.Tensor] = {}
        self.v: dict[str, torch.Tensor] = {}

    def combine(
        self, global_state: AdapterState, updates: Sequence[ClientUpdate], round_idx: int
    ) -> AdapterState:
        states = [u.state for u in updates]
        keys = common_keys(states)
        pairs, _ = lora_pairs(keys)
        for prefix, (a_key, b_key) in pairs.items():
            require_equal_ranks(self.name, prefix + "lora_*", pair_ranks(states, a_key, b_key))
        missing = [k for k in keys if k not in global_state]
        if missing:
            raise KeyError(
                f"{self.name} needs the current global value of every shared key to form "
                f"the pseudo-gradient; the global state lacks {missing[:5]}"
            )
        mean = weighted_mean(
            states, client_weights([u.num_examples for u in updates], self.weighting)
        )
        self.step += 1
        lr = step_size(self.eta, self.beta_1, self.beta_2, self.step, self.bias_correction)
        out: AdapterState = {}
        for key in keys:
            x = global_state[key].to(torch.float64)
            delta = mean[key].to(torch.float64) - x
            m = self.m.get(key, torch.zeros_like(x))
            v = self.v.get(key, torch.zeros_like(x))
            x_new, self.m[key], self.v[key] = server_step(
                x,
                delta,
                m,
                v,
                rule=self.rule,
                lr=lr,
                beta_1=self.beta_1,
                beta_2=self.beta_2,
                tau=self.tau,
            )
            out[key] = x_new.to(global_state[key].dtype)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "m": {k: t.clone() for k, t in self.m.items()},
            "v": {k: t.clone() for k, t in self.v.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:  # a checkpoint written before the first step
            self.step, self.m, self.v = 0, {}, {}
            return
        if set(state) != _STATE_KEYS:
            raise KeyError(
                f"{type(self).__name__} state needs keys {sorted(_STATE_KEYS)}, got {sorted(state)}"
            )
        if set(state["m"]) != set(state["v"]):
            raise KeyError("server optimiser state has first and second moments for different keys")
        self.step = int(state["step"])
        self.m = {k: t.to(torch.float64).clone() for k, t in state["m"].items()}
        self.v = {k: t.to(torch.float64).clone() for k, t in state["v"].items()}


class FedAdam(FedOpt):
    """Server Adam; Flower's defaults (η=0.1, β=(0.9, 0.99), τ=1e-9) and its bias correction."""

    name = "fedadam"
    display_name = "FedAdam"
    report_group = "Global"
    rule = "adam"
    defaults = {**FedOpt.defaults, "bias_correction": "flower"}


class FedYogi(FedOpt):
    """Server Yogi; Flower's defaults (η=0.01, β=(0.9, 0.99), τ=1e-3), no bias correction."""

    name = "fedyogi"
    display_name = "FedYogi"
    report_group = "Global"
    rule = "yogi"
    defaults = {**FedOpt.defaults, "eta": 0.01, "tau": 1e-3}


class FedAdagrad(FedOpt):
    """Server Adagrad; Flower's defaults (η=0.1, τ=1e-9, β1=0: m is the pseudo-gradient)."""

    name = "fedadagrad"
    display_name = "FedAdagrad"
    report_group = "Global"
    rule = "adagrad"
    defaults = {**FedOpt.defaults, "beta_1": 0.0, "beta_2": 0.0}
