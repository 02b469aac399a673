"""Refuse a configuration that cannot mean what it says, before anything is built.

Two checks, both answered with one line that names the option as it is typed on the command
line (``federation.rounds=0: must be an integer >= 1``):

- **ranges** (:data:`RULES`): types and bounds of the federation, optimisation, benchmark-size
  and adapter options, plus the relations between options (``method.top_k <= method.num_experts``,
  ``federation.clients_per_round`` as a fraction or a count of the clients);
- **names** (:func:`check_names`): every key of a ``_target_`` node (method, rule, model,
  benchmark) must be an argument of its class or function, and every ``federation.*`` key a
  field of :class:`FederationConfig`; an unknown one is answered with the names that exist.

:func:`validate_config` runs both; ``build.build_components`` calls it first, so every entry
point (``train.py``, ``eval.py``, the Flower apps) refuses the same settings the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from fedmllm.federation.config import FederationConfig


class ConfigError(ValueError):
    """A setting refused before anything is built; the message is one line for the user."""


@dataclass(frozen=True)
class Range:
    """The values an option may take: a type and optional bounds (closed unless ``*_open``)."""

    kind: type = int
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False

    def describe(self) -> str:
        """E.g. ``an integer >= 1``, ``a number in [0, 1)``, ``a number > 0``."""
        what = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            bounds = f" in {left}{_num(self.low)}, {_num(self.high)}{right}"
        elif self.low is not None:
            bounds = f" {'>' if self.low_open else '>='} {_num(self.low)}"
        elif self.high is not None:
            bounds = f" {'<' if self.high_open else '<='} {_num(self.high)}"
        else:
            bounds = ""
        return what + bounds + (" (or null)" if self.nullable else "")

    def admits(self, value: Any) -> bool:
        """Whether ``value`` has the type and lies within the bounds."""
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


COUNT = Range(int, low=1)
NATURAL = Range(int, low=0)
POSITIVE = Range(float, low=0, low_open=True)
NON_NEGATIVE = Range(float, low=0)
FRACTION = Range(float, low=0, high=1)

RULES: dict[str, Range] = {
    "seed": Range(int),
    # the round loop and its optimiser
    "federation.rounds": COUNT,
    "federation.local_steps": COUNT,
    "federation.batch_size": COUNT,
    "federation.eval_batch_size": COUNT,
    "federation.lr": POSITIVE,
    "federation.warmup_steps": NATURAL,
    "federation.min_lr_ratio": FRACTION,
    "federation.eval_every": NATURAL,
    "federation.drift_pairwise_max": NATURAL,
    "federation.max_new_tokens.*": COUNT,
    # the adapter block every method shares (method/blocks/adapter.yaml) and method arguments
    "method.r": COUNT,
    "method.alpha": POSITIVE,
    "method.dropout": Range(float, low=0, high=1, high_open=True),
    "method.weight_decay": NON_NEGATIVE,
    "method.grad_clip": NON_NEGATIVE,
    "method.grad_accum": COUNT,
    "method.proximal_mu": NON_NEGATIVE,
    "method.client_ranks.*": COUNT,
    "method.num_experts": NATURAL,
    "method.top_k": COUNT,
    "method.max_experts": COUNT,
    "method.phase1_fraction": FRACTION,
    "method.local_fraction": FRACTION,
    "method.balance_loss_coef": NON_NEGATIVE,
    "method.fixed_w": FRACTION,
    "method.max_reps": COUNT,
    "method.stage_schedule.tau": FRACTION,
    "method.stage_schedule.switch_round_frac": FRACTION,
    # server rules
    "aggregator.eta": POSITIVE,
    "aggregator.tau": POSITIVE,
    "aggregator.beta_1": Range(float, low=0, high=1, high_open=True),
    "aggregator.beta_2": FRACTION,
    "aggregator.lam": POSITIVE,
    "aggregator.cond_threshold": Range(float, low=1),
    "aggregator.warmup_rounds": NATURAL,
    "aggregator.max_clusters": COUNT,
    "aggregator.num_clients": Range(int, low=1, nullable=True),
    # benchmark sizes (null: every record, on the real benchmarks)
    "benchmark.public_size": Range(int, low=0, nullable=True),
    "benchmark.train_sizes.*": Range(int, low=1, nullable=True),
    "benchmark.test_size": Range(int, low=1, nullable=True),
    "benchmark.image_size": COUNT,
    "benchmark.partition.num_clients": COUNT,
    "benchmark.partition.alpha": POSITIVE,
    "benchmark.partition.quantity_beta": Range(float, low=0, low_open=True, nullable=True),
    "benchmark.partition.min_train": NATURAL,
    "benchmark.partition.min_test": NATURAL,
    # pretraining of the tiny model
    "model.pretrain.steps": NATURAL,
    "model.pretrain.batch_size": COUNT,
    "model.pretrain.lr": POSITIVE,
}
"""Option (``*``: every entry of a mapping) -> the values it may take; absent options pass."""
NON_EMPTY = ("method.target_modules", "method.mole_targets")
"""Lists of modules to adapt: at least one name."""

INSTANTIATED = ("benchmark", "model", "method", "aggregator")
"""Config nodes handed to their ``_target_`` as keyword arguments."""
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
BUILT_ARGUMENTS = {"engine", "public", "vocabulary"}
"""Arguments the composition root passes itself (``build.build_components``), not options."""
SYNONYMS = {
    # The same idea spelled by another method, or by PEFT.
    "lora_targets": ["target_modules"],
    "target_modules": ["lora_targets", "mole_targets"],
    "mole_targets": ["target_modules"],
    "lora_r": ["r"],
    "rank": ["r"],
    "lora_alpha": ["alpha"],
    "lora_dropout": ["dropout"],
    "mu": ["proximal_mu"],
    "experts": ["num_experts", "max_experts"],
}


def _entries(cfg: DictConfig, pattern: str) -> Iterator[tuple[str, Any]]:
    """``(option, value)`` of every option ``pattern`` names that ``cfg`` has.

    An option whose interpolation does not resolve is left to the stage that uses it (a
    method and a rule that do not belong together are refused by ``build.check_pair``).
    """
    parent, _, leaf = pattern.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return
    for key in node if leaf == "*" else [leaf] if leaf in node else []:
        try:
            yield f"{parent}.{key}" if parent else key, node[key]
        except InterpolationResolutionError:
            continue


def _refuse(option: str, value: Any, allowed: str) -> ConfigError:
    shown = "null" if value is None else value
    return ConfigError(f"{option}={shown}: must be {allowed}")


def check_ranges(cfg: DictConfig) -> None:
    """Types and bounds of :data:`RULES` and the relations between options.

    Raises:
        ConfigError: The first option out of range, as ``<option>=<value>: must be <range>``.
    """
    for pattern, allowed in RULES.items():
        for option, value in _entries(cfg, pattern):
            if not allowed.admits(value):
                raise _refuse(option, value, allowed.describe())
    for option in NON_EMPTY:
        value = OmegaConf.select(cfg, option)
        if value is not None and not (isinstance(value, ListConfig) and len(value)):
            raise _refuse(option, value, "a list of at least one module name, e.g. [q_proj]")
    per_round = OmegaConf.select(cfg, "federation.clients_per_round")
    fraction = Range(float, low=0, high=1, low_open=True)
    if per_round is not None and not (
        (isinstance(per_round, float) and fraction.admits(per_round)) or COUNT.admits(per_round)
    ):
        raise _refuse(
            "federation.clients_per_round",
            per_round,
            "null (all clients), a fraction in (0, 1] or a count of clients >= 1",
        )
    experts, top_k = (OmegaConf.select(cfg, f"method.{k}") for k in ("num_experts", "top_k"))
    if experts and top_k is not None and top_k > experts:
        raise ConfigError(
            f"method.top_k={top_k}: must be <= method.num_experts={experts} "
            "(K experts chosen per token out of N)"
        )


def check_clients_per_round(per_round: int | float | None, num_clients: int) -> None:
    """A count of clients per round must not exceed the clients the benchmark has.

    Raises:
        ConfigError: ``federation.clients_per_round`` is an integer above ``num_clients``.
    """
    if isinstance(per_round, int) and not isinstance(per_round, bool) and per_round > num_clients:
        raise _refuse(
            "federation.clients_per_round",
            per_round,
            f"a fraction in (0, 1] or a count of clients in [1, {num_clients}] "
            f"(the benchmark has {num_clients} clients)",
        )


def accepted_arguments(target: str) -> set[str] | None:
    """Keyword arguments the class or function ``target`` accepts; None when it takes any.

    A class's ``**kwargs`` handed to its base (``LoRAMethod`` -> ``AdapterMethod``) are
    followed along the MRO. A target that cannot be imported gives None: instantiating it
    reports that.
    """
    module, _, name = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None
    callables = (
        [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)]
        if inspect.isclass(obj)
        else [obj]
    )
    names: set[str] = set()
    for fn in callables:
        params = inspect.signature(fn).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - {"self"}
    return None


def suggest(option: str, known: set[str]) -> str:
    """`` did you mean <x>?`` for the nearest known names of ``option``'s last part, or ``""``."""
    parent, _, leaf = option.rpartition(".")
    close = [k for k in SYNONYMS.get(leaf, []) if k in known]
    close += [k for k in difflib.get_close_matches(leaf, sorted(known), n=3) if k not in close]
    if not close:
        return ""
    names = " or ".join(f"{parent}.{k}" if parent else k for k in close[:3])
    return f"; did you mean {names}?"


def unknown_option(option: str, owner: str, known: set[str]) -> ConfigError:
    """``<option>: <owner> has no such option; did you mean ...? Its options: ...``."""
    known = {k for k in known if not k.startswith("_")} - BUILT_ARGUMENTS
    shown = ", ".join(sorted(known))
    hint = suggest(option, known) or "."
    return ConfigError(f"{option}: {owner} has no such option{hint} Its options: {shown}")


def _owner(group: str, node: DictConfig) -> str:
    name = node.get("name") if isinstance(node.get("name"), str) else None
    return " ".join(filter(None, [group, name, f"({node['_target_']})"]))


def explain_unknown(cfg: DictConfig, option: str) -> str | None:
    """One line for ``option`` (``a.b.c``) that ``cfg`` does not have: the first part that does
    not exist, the names that do there, and the nearest of them; None if it exists."""
    node: Any = cfg
    parts = option.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return None
        if part not in node:
            where = ".".join(parts[:i])
            known = set(map(str, node))
            owner = where or "the config"
            if "_target_" in node:
                known = accepted_arguments(str(node["_target_"])) or known
                owner = _owner(where, node)
            return str(unknown_option(".".join(parts[: i + 1]), owner, known))
        node = node[part]
    return None


def check_names(cfg: DictConfig) -> None:
    """Every key of an instantiated node is an argument of its target; federation keys exist.

    Raises:
        ConfigError: The first unknown key, with the nearest names that exist.
    """
    for group in INSTANTIATED:
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        target = str(node["_target_"])
        accepted = accepted_arguments(target)
        if accepted is None:
            continue
        for key in node:
            if key not in accepted and key not in HYDRA_KEYS:
                raise unknown_option(f"{group}.{key}", _owner(group, node), accepted)
    fields = {f.name for f in dataclasses.fields(FederationConfig)} - {"seed"}
    for key in cfg.get("federation") or {}:
        if key not in fields:
            raise unknown_option(f"federation.{key}", "federation", fields)


def validate_config(cfg: DictConfig) -> None:
    """:func:`check_ranges` and :func:`check_names`: refuse a bad setting before building.

    Raises:
        ConfigError: One line naming the option and what it may be.
    """
    check_ranges(cfg)
    check_names(cfg)
