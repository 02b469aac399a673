"""Where a run writes: a fresh folder, the unfinished run it resumes, a multirun job's folder.

``hydra/default.yaml`` asks two resolvers registered here (:func:`register_resolvers`, by the
Hydra app ``fedmllm.train``):

- ``hydra.run.dir: ${fedmllm.run_dir:${resume},<runs dir>,<time>}`` — a resumed run continues
  in its own folder (one folder, one TensorBoard stream, one ``results.json``), a fresh run
  gets ``<runs dir>/<time>``;
- ``hydra.sweep.subdir: ${fedmllm.job_dir:...}`` — a multirun job's folder is named by what
  the sweep varies: ``fedmed_fedavg_r16_seed0`` for ``experiment=...,... method.r=4,16 seed=0,1``.

A run folder with a checkpoint but no ``results.json`` is unfinished; only those are resumed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from fedmllm.federation.checkpoint import CHECKPOINT_NAME
from fedmllm.run_files import RESULTS_FILE

FALSE = (None, False, "false", "null", "")
"""``resume`` values that mean a fresh run."""
UNNAMED = ("seed", "threads", "debug", "logger", "paths.", "hydra.", "resume", "experiment")
"""Overrides a job folder is not named by (the seed and experiment have their own place)."""


def runs_dir(log_dir: str | Path, task_name: str) -> Path:
    """``<log dir>/<task name>/runs``: where the single runs of a task live."""
    return Path(log_dir) / task_name / "runs"


def is_unfinished(run_dir: Path) -> bool:
    """A checkpoint and no ``results.json``: interrupted, resumable."""
    return (run_dir / CHECKPOINT_NAME).is_file() and not (run_dir / RESULTS_FILE).exists()


def latest_unfinished(runs: Path) -> Path | None:
    """The unfinished run under ``runs`` whose checkpoint was written last, or None."""
    found = [p.parent for p in runs.glob(f"*/{CHECKPOINT_NAME}") if is_unfinished(p.parent)]
    return max(found, key=lambda d: (d / CHECKPOINT_NAME).stat().st_mtime, default=None)


def resume_dir(resume: Any, runs: Path) -> Path | None:
    """The run folder ``resume`` names: None for a fresh run (``null``/``false``), the latest
    unfinished run under ``runs`` for ``true``, else the given run folder (or its checkpoint).

    Raises:
        FileNotFoundError: Nothing to resume: no unfinished run, no checkpoint there, or the
            run is finished (a finished run is never resumed).
    """
    if resume in FALSE:
        return None
    if resume is True or resume == "true":
        found = latest_unfinished(runs)
        if found is None:
            raise FileNotFoundError(
                f"resume=true: nothing to resume: no unfinished run (a {CHECKPOINT_NAME} "
                f"without {RESULTS_FILE}) under {runs}"
            )
        return found
    path = Path(str(resume)).expanduser()
    run = path.parent if path.is_file() else path
    if not (run / CHECKPOINT_NAME).is_file():
        raise FileNotFoundError(f"resume={resume}: no checkpoint {run / CHECKPOINT_NAME}")
    if (run / RESULTS_FILE).exists():
        raise FileNotFoundError(
            f"resume={resume}: nothing to resume: the run is finished ({run / RESULTS_FILE})"
        )
    return run


def hydra_run_dir(resume: Any, runs: str, stamp: str) -> str:
    """``hydra.run.dir``: the folder a resume continues in, else ``<runs>/<stamp>``.

    Raises:
        FileNotFoundError: Nothing to resume (:func:`resume_dir`): the command stops before
            Hydra creates a folder.
    """
    return str(resume_dir(resume, Path(runs)) or Path(runs) / stamp)


def swept_keys(sweep_dir: Path, sweeper_params: Mapping[str, Any] | None) -> set[str] | None:
    """The options a multirun varies: sweeps on its command line (``multirun.yaml``, which
    Hydra's basic sweeper writes) and the sweeper's ``params``; None when neither is known."""
    keys = set(sweeper_params or {})
    saved = sweep_dir / "multirun.yaml"
    if saved.is_file():
        given = OmegaConf.load(saved).hydra.overrides.task
        parsed = OverridesParser.create().parse_overrides(list(given))
        keys |= {o.key_or_group for o in parsed if o.is_sweep_override()}
        return keys
    return keys or None


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if len(value) <= 8 or not number else f"{number:.4g}"


def _part(key: str, value: str) -> str:
    """``method.r=16`` -> ``r16``; a group choice (``aggregator=fedadam``) -> ``fedadam``."""
    return _short(value) if "." not in key else key.rsplit(".", 1)[1] + _short(value)


def job_dirname(
    method: str,
    seed: int,
    overrides: Iterable[str],
    sweep_dir: str,
    job_num: int,
    sweeper_params: Mapping[str, Any] | None = None,
) -> str:
    """A multirun job's folder: the experiment (or method), the swept values, the seed.

    E.g. ``fedmed_fedavg_r16_seed0``. Values the sweep does not vary are left out when the
    sweep is known (:func:`swept_keys`); should two jobs still read alike, the second gets
    its job number appended, so every job has its own folder.
    """
    pairs = [(k.lstrip("+~"), v) for k, _, v in (o.partition("=") for o in overrides)]
    swept = swept_keys(Path(sweep_dir), sweeper_params)
    head = next((v for k, v in pairs if k == "experiment"), method)
    named = [
        _part(k, v) for k, v in pairs if not k.startswith(UNNAMED) and (swept is None or k in swept)
    ]
    name = re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join([head, *named, f"seed{seed}"]))[:150]
    if (Path(sweep_dir) / name).exists():
        name = f"{name}_{job_num}"
    return name


def register_resolvers() -> None:
    """Register ``fedmllm.run_dir`` and ``fedmllm.job_dir`` (used by ``hydra/default.yaml``)."""
    if not OmegaConf.has_resolver("fedmllm.run_dir"):
        OmegaConf.register_new_resolver("fedmllm.run_dir", hydra_run_dir)
    if not OmegaConf.has_resolver("fedmllm.job_dir"):
        OmegaConf.register_new_resolver("fedmllm.job_dir", job_dirname)
