"""Baseline runs for a side-by-side comparison: their configs, and finished runs to reuse.

An experiment may name baselines (``compare_with``) that the composition root runs before
it on the same benchmark, model, federation settings and seed. A baseline's config is the
run's own config with the ``method`` and ``aggregator`` nodes replaced by the named config
groups (composed by Hydra, so their defaults lists apply), with the compared method's adapter
block (``configs/method/blocks/adapter.yaml``: rank, alpha, dropout, optimisation) and
``compare_method_overrides`` (e.g. the same target modules). A finished run whose
resolved config matches on :data:`COMPARED_KEYS` is reused instead of being trained again.
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict

from fedmllm.configs import CONFIG_DIR, compose_train
from fedmllm.run_files import RESULTS_FILE

log = logging.getLogger(__name__)

COMPARED_KEYS = ("benchmark", "model", "method", "aggregator", "federation", "fabric", "seed")
"""What must be equal for a finished run to stand in for a baseline."""


def compose_group(group: str, name: str) -> DictConfig:
    """The config node ``<group>/<name>.yaml`` as Hydra composes it (defaults honoured).

    Inside ``train.py``'s Hydra app its search path is used (config dirs the user added).

    Raises:
        ValueError: No such config (the message lists what exists).
    """
    try:
        return compose_train([f"{group}={name}"])[group]
    except MissingConfigException as e:
        raise ValueError(f"compare_with: no config {group}/{name}: {e}") from e


ADAPTER_BLOCK = Path("method") / "blocks" / "adapter.yaml"
"""The adapter block every method shares (rank, scaling, dropout, optimisation)."""


def _method_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The compared method's adapter-block values, then ``compare_method_overrides``."""
    block = OmegaConf.load(CONFIG_DIR / ADAPTER_BLOCK)
    carried = {k: cfg.method[k] for k in block if k in cfg.method}
    node = cfg.get("compare_method_overrides")
    explicit = OmegaConf.to_container(node, resolve=True) if node else {}
    return {**OmegaConf.to_container(OmegaConf.create(carried), resolve=True), **explicit}


def baseline_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """The full config of every baseline named in ``cfg.compare_with``, in order.

    ``compare_with`` maps a label to ``{method: <method config>, aggregator: <aggregator
    config>}``. Each baseline writes to ``<log_dir>/<task_name>.<label>/runs/<time>``.

    Raises:
        ValueError: A malformed entry, an unknown config, or an override the baseline's
            method does not take.
    """
    overrides = _method_overrides(cfg)  # resolved against the compared method's config
    out: dict[str, DictConfig] = {}
    for label, spec in cfg.compare_with.items():
        if not isinstance(spec, DictConfig) or set(spec) != {"method", "aggregator"}:
            raise ValueError(
                f"compare_with.{label} must be {{method: <name>, aggregator: <name>}}, got {spec}"
            )
        method = compose_group("method", spec.method)
        unknown = sorted(set(overrides) - set(method))
        if unknown:
            raise ValueError(
                f"compare_method_overrides {unknown} are not arguments of method/{spec.method}"
            )
        base = copy.deepcopy(cfg)
        with open_dict(base):
            base.method = OmegaConf.merge(method, overrides)
            base.aggregator = compose_group("aggregator", spec.aggregator)
            base.compare_with = None
            base.compare_method_overrides = None
            base.resume = None
            base.task_name = f"{cfg.task_name}.{label}"
            base.paths.output_dir = str(_fresh_run_dir(Path(cfg.paths.log_dir) / base.task_name))
        out[str(label)] = base
    return out


def _fresh_run_dir(task_dir: Path) -> Path:
    """``<task_dir>/runs/<now>``, suffixed when taken (a sweep starts many runs a second)."""
    base = task_dir / "runs" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path, i = base, 0
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}_{i}")
    return path


def _signature(config: dict[str, Any]) -> str:
    return json.dumps({k: config.get(k) for k in COMPARED_KEYS}, sort_keys=True)


def find_finished_run(log_dir: str | Path, cfg: DictConfig) -> Path | None:
    """The newest ``results.json`` under ``log_dir`` whose config matches ``cfg``.

    Looks at ``<task>/runs/<run>/`` and ``<task>/multiruns/<sweep>/<job>/`` directories.
    """
    want = _signature(OmegaConf.to_container(cfg, resolve=True))
    root = Path(log_dir)
    found = [*root.glob(f"*/runs/*/{RESULTS_FILE}"), *root.glob(f"*/multiruns/*/*/{RESULTS_FILE}")]
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            config = json.loads(path.read_text()).get("config", {})
        except (OSError, json.JSONDecodeError):
            continue  # a file being written or damaged is no reason to stop looking
        if _signature(config) == want:
            return path
    return None
