"""Atomic round checkpoints and the RNG state they carry."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedmllm.utils.io import torch_save_atomic

CHECKPOINT_NAME = "last.ckpt"
CHECKPOINT_KEYS = frozenset(
    {
        "version",
        "round",
        "global_state",
        "client_store",
        "aggregator",
        "rng",
        "comm",
        "history",
        "baselines",
        "base_weights",  # frozen weights a server rule changed (FedEx, FRLoRA); may be absent
        "config",  # the run's resolved config (fedmllm.resume compares a resume with it)
    }
)
VERSION = 1


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch CPU generator states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to a temp file beside ``path`` and rename it into place.

    A crash mid-write leaves the previous checkpoint intact.
    """
    unknown = set(payload) - CHECKPOINT_KEYS
    if unknown:
        raise KeyError(f"unknown checkpoint keys {sorted(unknown)}")
    torch_save_atomic({"version": VERSION, **payload}, Path(path))


def read_checkpoint_file(path: str | Path, name: str, what: str = "checkpoint") -> Any:
    """The object saved at ``path`` (or at ``path/name`` when ``path`` is a directory).

    Raises:
        FileNotFoundError: If there is no such file.
        RuntimeError: If it cannot be read (truncated, or not a torch file).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return torch.load(path, weights_only=False)
    except Exception as e:  # a truncated or foreign file: say which
        raise RuntimeError(f"{what} {path} cannot be read ({e}); it may be corrupted") from e


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; unknown keys raise ``KeyError``."""
    payload = read_checkpoint_file(path, CHECKPOINT_NAME)
    unknown = set(payload) - CHECKPOINT_KEYS
    if unknown:
        raise KeyError(f"checkpoint {path} has keys this version does not use: {sorted(unknown)}")
    if payload.get("version") != VERSION:
        raise ValueError(
            f"checkpoint {path} has version {payload.get('version')}, expected {VERSION}"
        )
    return payload
