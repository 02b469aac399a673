"""One Hydra composition for ``train.py``, the ServerApp and every ClientApp.

Flower hands an app two flat key/value configs: the run config (the same for the ServerApp and
every node: which experiment, which overrides) and the node config (one per SuperNode: its
partition, data and state directories). This module turns them into the composed
``DictConfig`` ``train.py`` would build from the same overrides, and holds the deployment's
own knobs (:class:`FlowerOptions`).
"""

from __future__ import annotations

import datetime as _dt
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from omegaconf import DictConfig, open_dict

from fedmllm.configs import compose_train, overridden_keys

OVERRIDES_KEY = "overrides"
"""Run-config key: Hydra overrides as one shell-quoted string, e.g. ``experiment=... seed=1``."""
CONFIG_DIR_KEY = "config-dir"
"""Run- or node-config key: a whole config tree (with its ``train.yaml``) to use instead of
the packaged one (``fedmllm.configs``); empty: the packaged one. To add configs of your own
beside the packaged ones, put ``hydra.searchpath=[file:///dir]`` in the overrides."""


def split_overrides(text: str) -> list[str]:
    """Hydra overrides from the run config's one-string form (shell quoting allowed)."""
    try:
        return shlex.split(text or "")
    except ValueError as e:
        raise ValueError(f"run config {OVERRIDES_KEY!r} is not a valid override list: {e}") from e


def compose_config(overrides: Sequence[str], config_dir: str | None = None) -> DictConfig:
    """Compose ``train.yaml`` with ``overrides`` outside a Hydra app, as ``train.py`` would.

    Paths Hydra resolves at run time get plain values: ``paths.root_dir`` is the working
    directory and ``paths.output_dir`` a fresh ``<log_dir>/<task_name>/runs/<time>_flower``,
    unless the overrides set them. The TensorBoard logger is kept only if asked for.
    ``config_dir``: see :data:`CONFIG_DIR_KEY`.
    """
    overrides = list(overrides)
    cfg = compose_train(overrides, config_dir or None)
    given = overridden_keys(overrides)
    with open_dict(cfg):
        if "paths.output_dir" not in given:
            stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            cfg.paths.output_dir = f"{cfg.paths.log_dir}/{cfg.task_name}/runs/{stamp}_flower"
        if "logger" not in given:
            cfg.logger = None
        # Baselines side by side (Fed-MoLE experiments) are a train.py feature, not a federation.
        cfg.compare_with = None
    return cfg


@dataclass
class FlowerOptions:
    """Deployment knobs beyond the Hydra config (run-config keys in kebab case).

    Attributes:
        min_replies: Valid replies a round needs to aggregate: a count (>= 1), a fraction in
            (0, 1) of the sampled clients, or 0 for all of them (then any loss fails the round).
        round_timeout: Seconds a round waits for replies before aggregating what arrived.
        min_nodes: Clients that must be connected before the first round (0: all).
        node_wait: Seconds to wait for them.
        eval_timeout: Seconds an evaluation waits for the nodes' scores.
        secagg: 1: aggregate through Flower's SecAgg+ (the server sees only the sum;
            ``fedmllm.deploy.flower.secagg``); 0: plain updates.
        secagg_clip: SecAgg+'s clipping range of ``(n_k / max_weight) · x_k``.
        secagg_max_weight: SecAgg+'s largest client weight n_k.
    """

    min_replies: float = 0
    round_timeout: float = 3600.0
    min_nodes: int = 0
    node_wait: float = 600.0
    eval_timeout: float = 3600.0
    secagg: float = 0.0
    secagg_clip: float = 8.0
    secagg_max_weight: float = 1000.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FlowerOptions:
        """Read the options from a flat config (Flower's run config); other keys are ignored."""
        out = cls()
        for f in fields(cls):
            key = f.name.replace("_", "-")
            if key in config:
                try:
                    setattr(out, f.name, float(config[key]))
                except (TypeError, ValueError) as e:
                    raise ValueError(f"run config {key!r}={config[key]!r} is not a number") from e
        out.min_nodes = int(out.min_nodes)
        if out.min_replies < 0 or out.round_timeout <= 0 or out.node_wait < 0:
            raise ValueError(f"invalid Flower options {out}")
        return out

    def needed(self, sampled: int) -> int:
        """Valid replies a round with ``sampled`` clients needs."""
        if self.min_replies <= 0:
            return sampled
        if self.min_replies < 1:  # a fraction of the sampled clients, rounded up
            return max(1, math.ceil(self.min_replies * sampled - 1e-9))
        return min(sampled, int(self.min_replies))

    def as_run_config(self) -> dict[str, float]:
        """The options as run-config entries."""
        return {f.name.replace("_", "-"): float(getattr(self, f.name)) for f in fields(self)}
