"""The top-K router of a mixture of LoRA experts, and the statistics of its choices.

The router is a linear gate on the layer input, per token: logits ``z = W_r x``; the K largest
logits choose the experts and ``gating`` says how they are weighted (zero outside the top K):

- ``topk_softmax``: softmax over the K chosen logits, ``p_i = exp(z_i) / Σ_{j∈TopK} exp(z_j)``
  (the weights of a token sum to one);
- ``softmax_topk``: softmax over all N logits, restricted to the top K without
  renormalisation, ``p_i = exp(z_i) / Σ_{j=1..N} exp(z_j)`` (they sum to at most one).

Fed-MoLE's Eq. (7) writes the denominator as a sum from j = 1 to N (docs/methods.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Routing:
    """One forward's routing decision for ``T`` tokens.

    Attributes:
        logits: ``(T, N)`` router logits.
        indices: ``(T, K)`` chosen experts per token, largest logit first.
        weights: ``(T, K)`` gate weights of the chosen experts (rows sum to one with
            ``topk_softmax``, to at most one with ``softmax_topk``).
    """

    logits: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor


GATINGS = ("topk_softmax", "softmax_topk")
"""Ways to weight the K chosen experts (see the module docstring)."""


def check_gating(gating: str) -> None:
    """Raise a clear error unless ``gating`` is one of :data:`GATINGS`."""
    if gating not in GATINGS:
        raise ValueError(f"method.gating must be one of {GATINGS}, got {gating!r}")


def gate(logits: torch.Tensor, top_k: int, gating: str = "topk_softmax") -> Routing:
    """Choose the K largest logits per row and weight them by ``gating``.

    Args:
        logits: ``(T, N)`` router logits.
        top_k: K.
        gating: One of :data:`GATINGS`.
    """
    top_logits, indices = logits.topk(top_k, dim=-1)
    if gating == "topk_softmax":
        weights = top_logits.softmax(dim=-1)
    else:
        weights = logits.softmax(dim=-1).gather(-1, indices)
    return Routing(logits, indices, weights)


class TopKRouter(nn.Module):
    """Linear gate choosing K of N experts per token.

    Args:
        in_features: Width of the layer input.
        num_experts: N, at least one.
        top_k: K, between 1 and N.
        gating: ``topk_softmax`` (default) or ``softmax_topk``; see :data:`GATINGS`.
        device: Where the gate weight lives.
        dtype: Dtype of the gate weight.

    Attributes:
        weight: ``(N, in_features)`` gate weight (the state key ``<layer>.router.weight``),
            initialised like ``nn.Linear`` so that tokens spread over experts from the start.
    """

    def __init__(
        self,
        in_features: int,
        num_experts: int,
        top_k: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        gating: str = "topk_softmax",
    ) -> None:
        super().__init__()
        check_gating(gating)
        if num_experts < 1:
            raise ValueError(f"a router needs num_experts >= 1, got {num_experts}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(
                f"top_k={top_k} must satisfy 1 <= top_k <= num_experts={num_experts} "
                "(the router picks K of the N routed experts)"
            )
        self.num_experts = num_experts
        self.top_k = top_k
        self.gating = gating
        self.weight = nn.Parameter(
            torch.empty(num_experts, in_features, device=device, dtype=dtype)
        )
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-uniform initialisation, as ``nn.Linear`` (a = sqrt(5))."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)

    def forward(self, x: torch.Tensor) -> Routing:
        """Route ``(T, in_features)`` tokens."""
        return gate(F.linear(x, self.weight), self.top_k, self.gating)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f"num_experts={self.num_experts}, top_k={self.top_k}, gating={self.gating}"


def expert_counts(indices: torch.Tensor, num_experts: int) -> torch.Tensor:
    """How many token assignments each expert received (a ``(N,)`` int64 vector)."""
    return torch.bincount(indices.reshape(-1), minlength=num_experts)


def router_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of the entropy (nats) of the full softmax over all N experts.

    ``log N`` means the router has no preference; 0 means it is certain.
    """
    logp = logits.float().log_softmax(dim=-1)
    return -(logp.exp() * logp).sum(dim=-1).mean()


def load_balancing_loss(logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer auxiliary loss ``N · Σ_i f_i · P_i``.

    ``f_i`` is the fraction of the T·K assignments that went to expert i (not
    differentiable) and ``P_i`` the mean softmax probability of expert i over tokens (carries
    the gradient). It equals 1 for perfectly uniform routing and grows up to N as routing
    collapses onto one expert.

    Args:
        logits: ``(T, N)`` router logits.
        indices: ``(T, K)`` chosen experts.
    """
    num_experts = logits.shape[-1]
    counts = expert_counts(indices, num_experts).to(logits.dtype)
    fraction = counts / counts.sum().clamp_min(1)
    mean_prob = logits.float().softmax(dim=-1).mean(dim=0).to(logits.dtype)
    return num_experts * (fraction * mean_prob).sum()


class RoutingStats:
    """Running totals of a router's choices over several forwards (no gradient, no state key).

    Attributes:
        counts: ``(N,)`` assignments per expert.
        entropy_sum: Sum over forwards of the mean router entropy, weighted by token count.
        tokens: Tokens seen.
    """

    def __init__(self, num_experts: int) -> None:
        self.num_experts = num_experts
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.counts = torch.zeros(self.num_experts, dtype=torch.float64)
        self.entropy_sum = 0.0
        self.tokens = 0

    @torch.no_grad()
    def update(self, routing: Routing) -> None:
        """Add one forward's routing."""
        n = routing.logits.shape[0]
        self.counts += expert_counts(routing.indices, self.num_experts).cpu().double()
        self.entropy_sum += router_entropy(routing.logits).item() * n
        self.tokens += n

    def load(self) -> torch.Tensor:
        """Fraction of assignments per expert (sums to one once anything was seen)."""
        total = self.counts.sum()
        return self.counts / total if total > 0 else self.counts.clone()

    def entropy(self) -> float:
        """Token-weighted mean router entropy in nats (nan before any forward)."""
        return self.entropy_sum / self.tokens if self.tokens else float("nan")
