"""Add-ons to any method's local training: FedProx's proximal pull and SCAFFOLD's correction.

Both are client-side algorithms that do not care how the adapters are built, so they are
objects the base class runs around its local loop rather than method families:
``method=mole +method.proximal_mu=0.01`` is Fed-MoLE with FedProx; ``method.scaffold=true``
adds SCAFFOLD to any family (pair it with ``aggregator=scaffold``).

An add-on sees the method's trainable parameters (name -> parameter, names as the adapter
state's keys) and may keep private per-client tensors (``extra_state``), send extras up and
read the server's broadcast.
"""

from __future__ import annotations

from collections.abc import Collection

import torch

from fedmllm import compat
from fedmllm.types import AdapterState

Params = dict[str, torch.nn.Parameter]


class LocalAddon:
    """Hooks around a local update; every hook is a no-op here."""

    offers: frozenset[str] = frozenset()
    needs: frozenset[str] = frozenset()

    def owns(self, key: str) -> bool:
        """Whether ``key`` of the adapter state is this add-on's private tensor."""
        return False

    def extra_state(self) -> AdapterState:
        """Private per-client tensors (stored and checkpointed with the client)."""
        return {}

    def load_extra_state(self, state: AdapterState) -> None:
        """Restore :meth:`extra_state` from the keys of ``state`` this add-on owns."""

    def begin_client(self, extras: AdapterState) -> None:
        """The server's broadcast, on every swap-in."""

    def set_client(self, client_id: str) -> None:
        """The client whose turn it is, on every swap-in."""

    def begin_local(self, params: Params) -> None:
        """Before the first local step; the received global state is loaded."""

    def loss_term(self) -> torch.Tensor | None:
        """A term added to each step's loss (None: nothing)."""
        return None

    def after_step(self, lr: float) -> None:
        """After each optimiser step at learning rate ``lr``."""

    def metrics(self) -> dict[str, float]:
        """Scalars about the local update just finished (merged into the client's metrics)."""
        return {}

    def end_local(self, lr_sum: float) -> None:
        """After the last step; ``lr_sum`` is the sum of the trained steps' rates."""

    def client_extras(self) -> AdapterState:
        """Tensors sent up beside the shared state."""
        return {}

    def client_extras_shapes(self, shared: AdapterState) -> dict[str, tuple[int, ...]]:
        """Keys and shapes :meth:`client_extras` may send for a client sharing ``shared``."""
        return {}


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


class ProximalTerm(LocalAddon):
    """FedProx (Li et al., 2020): ``f(θ) + (μ/2)·Σ‖θ − θ_global‖²`` over the trainable tensors.

    θ_global is snapshotted (detached) when local training starts — the moment the global
    state has just been loaded — while θ stays the live parameter, so the term has the gradient
    ``μ(θ − θ_global)``. (Built from detached copies of the *current* parameters, as some public
    code does, it is a constant with no gradient at all.)

    Args:
        mu: Proximal coefficient μ (0.01 in the papers' comparisons), > 0.
    """

    def __init__(self, mu: float) -> None:
        if not mu > 0:
            raise ValueError(
                f"method.proximal_mu must be > 0 for FedProx (0 turns it off), got {mu}"
            )
        self.mu = float(mu)
        self._params: Params = {}
        self._anchor: dict[str, torch.Tensor] = {}

    def begin_local(self, params: Params) -> None:
        self._params = dict(params)
        self._anchor = {k: p.detach().clone() for k, p in params.items()}

    def loss_term(self) -> torch.Tensor:
        return proximal_term(self._params, self._anchor, self.mu)


CK_PREFIX = "scaffold_c_k."


def next_client_control(
    c_k: torch.Tensor, c: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr_sum: float
) -> torch.Tensor:
    """SCAFFOLD option II: ``c_k − c + (x − y) / Σ η``."""
    return c_k - c + (x - y) / lr_sum


class ScaffoldControl(LocalAddon):
    """SCAFFOLD (Karimireddy et al., 2020, option II) over the shared trainable tensors.

    The server's ``c`` arrives as the round's broadcast extras; the client's own ``c_k`` is
    private (``scaffold_c_k.<key>``). Both start at zero. After every optimiser step
    ``θ ← θ − η_i (c − c_k)`` for the tensors that step trained; after the round
    ``c_k⁺ = c_k − c + (x − y_k) / Σ_i η_i`` (x: the global parameters the client started from,
    y_k: where it ended) and ``Δc_k = c_k⁺ − c_k`` goes up in ``ClientUpdate.extras``. With a
    constant rate ``Σ_i η_i = K·η``, the paper's formula; with the run's cosine schedule the
    sum is its exact generalisation. Under a phase schedule (Fed-MoLE's ADA) Σ η runs over
    all trained steps, including those in which a tensor was frozen.

    Args:
        params: The tensors under control (name -> parameter): the method's shared
            trainable ones.
    """

    offers = frozenset({compat.SCAFFOLD})
    needs = frozenset({compat.SCAFFOLD})

    def __init__(self, params: Params) -> None:
        if not params:
            raise ValueError("SCAFFOLD needs shared trainable tensors; this method shares none")
        self.keys = sorted(params)
        self._c_k: AdapterState = {
            k: torch.zeros(p.shape, dtype=torch.float32) for k, p in params.items()
        }
        self._shapes = {k: tuple(p.shape) for k, p in params.items()}
        self._c: AdapterState = {}
        self._params: Params = {}
        self._x: AdapterState = {}
        self._diff: dict[str, torch.Tensor] = {}
        self._delta_c: AdapterState = {}

    def owns(self, key: str) -> bool:
        return key.startswith(CK_PREFIX)

    def extra_state(self) -> AdapterState:
        return {CK_PREFIX + k: v.clone() for k, v in self._c_k.items()}

    def load_extra_state(self, state: AdapterState) -> None:
        c_k = {k[len(CK_PREFIX) :]: v for k, v in state.items() if k.startswith(CK_PREFIX)}
        if c_k:
            self._c_k = self._checked(c_k, "client control variate c_k")

    def _checked(self, controls: AdapterState, what: str) -> AdapterState:
        unknown = sorted(set(controls) - set(self._shapes))
        if unknown:
            raise KeyError(f"SCAFFOLD {what} has keys that are not under control: {unknown[:3]}")
        for k, v in controls.items():
            if tuple(v.shape) != self._shapes[k]:
                raise ValueError(f"SCAFFOLD {what} {k!r}: shape {tuple(v.shape)}")
        return {k: v.detach().to("cpu", torch.float32, copy=True) for k, v in controls.items()}

    def begin_client(self, extras: AdapterState) -> None:
        self._c = self._checked(extras, "server control variate c")

    def begin_local(self, params: Params) -> None:
        self._params = {k: params[k] for k in self.keys}
        self._x = {
            k: p.detach().to("cpu", torch.float32, copy=True) for k, p in self._params.items()
        }
        zero = torch.zeros(())
        self._diff = {
            k: (self._c.get(k, zero) - self._c_k[k]).to(p.device, p.dtype)
            for k, p in self._params.items()
        }
        self._delta_c = {}

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        for k, p in self._params.items():
            if p.requires_grad:  # a tensor a phase schedule froze this step got no gradient
                p.sub_(lr * self._diff[k])

    def end_local(self, lr_sum: float) -> None:
        if lr_sum <= 0:
            self._delta_c = {k: torch.zeros_like(v) for k, v in self._c_k.items()}
            return
        zero = torch.zeros(())
        new_c_k = {}
        for k, p in self._params.items():
            y = p.detach().to("cpu", torch.float32)
            new_c_k[k] = next_client_control(
                self._c_k[k], self._c.get(k, zero), self._x[k], y, lr_sum
            )
        self._delta_c = {k: new_c_k[k] - self._c_k[k] for k in new_c_k}
        self._c_k = new_c_k

    def client_extras(self) -> AdapterState:
        return dict(self._delta_c)

    def client_extras_shapes(self, shared: AdapterState) -> dict[str, tuple[int, ...]]:
        # Δc_k has one entry per controlled tensor the client may share.
        return {k: tuple(v.shape) for k, v in shared.items() if k in self._shapes}


def make_addons(
    proximal_mu: float, scaffold: bool, trainable: Params, shared: Collection[str]
) -> list[LocalAddon]:
    """The add-ons a method's arguments ask for (FedProx first, then SCAFFOLD)."""
    addons: list[LocalAddon] = []
    if proximal_mu < 0:
        raise ValueError(f"method.proximal_mu must be >= 0, got {proximal_mu}")
    if proximal_mu > 0:
        addons.append(ProximalTerm(proximal_mu))
    if scaffold:
        addons.append(ScaffoldControl({k: p for k, p in trainable.items() if k in shared}))
    return addons
