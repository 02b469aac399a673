"""A resume continues the run that was interrupted, not another one.

A round checkpoint records the resolved config it was written under (``config``; older
checkpoints: the run folder's ``config.yaml``). :func:`check_resume` compares it with the
config of the resuming command: options outside :data:`RESUMABLE` (where the run writes, how
it logs, how often it evaluates, the threads it uses) must be equal, else the resume is
refused with the differing keys listed; ``resume_force=true`` resumes anyway and the changes
are recorded (``results.json``: ``resume.changed``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedmllm.config_check import ConfigError
from fedmllm.federation.checkpoint import CHECKPOINT_NAME, read_checkpoint_file
from fedmllm.run_files import load_run_config
from fedmllm.utils.trees import flatten

log = logging.getLogger(__name__)

RESUMABLE = (
    "threads",
    "logger",
    "paths.",
    "hydra.",
    "resume",  # and resume_force
    "task_name",
    "compare_to",
    "optimized_metric",
    "analysis.",
    "model.progress",
    "federation.eval_every",
    "federation.eval_batch_size",
    "federation.metric_options.",
    "federation.checkpoint",
    "federation.store_dir",
    "federation.drift_pairwise_max",
)
"""Options a resumed run may change: none of them changes what is trained."""


def config_changes(before: dict[str, Any], now: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Options whose values differ (outside :data:`RESUMABLE`): ``{key: {"checkpoint", "now"}}``."""
    old, new = flatten(before), flatten(now)
    missing = object()
    return {
        key: {"checkpoint": old.get(key), "now": new.get(key)}
        for key in sorted(set(old) | set(new))
        if not key.startswith(RESUMABLE) and old.get(key, missing) != new.get(key, missing)
    }


def checkpoint_config(run_dir: Path) -> tuple[dict[str, Any], int]:
    """The resolved config the run's checkpoint was written under, and its round."""
    payload = read_checkpoint_file(run_dir, CHECKPOINT_NAME)
    saved = payload.get("config")
    if saved is None:  # a checkpoint from before configs were recorded in it
        saved = OmegaConf.to_container(load_run_config(run_dir), resolve=True)
    return saved, int(payload["round"])


def _shown(change: dict[str, Any]) -> str:
    return f"{change['checkpoint']!r} -> {change['now']!r}"


def check_resume(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Compare ``cfg`` with the config of ``run_dir``'s checkpoint before resuming it.

    Returns:
        What ``results.json`` records under ``resume``: the run folder, the round resumed
        from, the changed options and whether ``resume_force`` allowed them.

    Raises:
        ConfigError: The configs differ outside :data:`RESUMABLE` and ``resume_force`` is off;
            the message lists every differing option.
    """
    saved, rnd = checkpoint_config(run_dir)
    changed = config_changes(saved, OmegaConf.to_container(cfg, resolve=True))
    force = bool(cfg.get("resume_force", False))
    if changed and not force:
        listed = "; ".join(f"{k}: {_shown(v)}" for k, v in changed.items())
        raise ConfigError(
            f"resume: the config differs from the checkpoint's in {listed}. Resume with the "
            "run's own settings, or add resume_force=true to continue with the new ones"
        )
    if changed:
        log.warning("resume_force=true: continuing %s with changed %s", run_dir, sorted(changed))
    log.info("resuming %s from round %d", run_dir, rnd)
    return {"run_dir": str(run_dir), "round": rnd, "changed": changed, "forced": bool(changed)}
