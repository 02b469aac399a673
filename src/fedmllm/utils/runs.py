"""Finding runs on disk: the latest unfinished run for ``resume=true``."""

from __future__ import annotations

from pathlib import Path

from fedmllm.federation.checkpoint import CHECKPOINT_NAME


def resolve_resume(resume: str | bool | None, runs_dir: Path, current_dir: Path) -> Path | None:
    """Turn the ``resume`` option into a checkpoint path.

    Args:
        resume: ``None``/``False`` (fresh run), ``True`` (latest run under ``runs_dir`` that has a
            checkpoint but no ``results.json``), or a run directory / checkpoint file.
        runs_dir: Where this task's runs live.
        current_dir: This run's own directory, never a candidate.

    Raises:
        FileNotFoundError: Nothing to resume from.
    """
    if resume in (None, False, "false", "null", ""):
        return None
    if resume is True or resume == "true":
        candidates = sorted(
            (
                p
                for p in runs_dir.glob(f"*/{CHECKPOINT_NAME}")
                if p.parent.resolve() != current_dir.resolve()
                and not (p.parent / "results.json").exists()
            ),
            key=lambda p: p.stat().st_mtime,
        )
        if not candidates:
            raise FileNotFoundError(
                f"resume=true but no unfinished run with a checkpoint under {runs_dir}"
            )
        return candidates[-1]
    path = Path(str(resume)).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"resume={resume}: no checkpoint at {path}")
    return path
