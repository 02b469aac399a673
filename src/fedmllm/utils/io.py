"""Files that are either whole or absent: a crash mid-write never leaves half a results file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file and a rename (no half-written files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def torch_save_atomic(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` through a temp file and a rename."""
    import torch  # here: the JSON helpers above are used where torch is not needed

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(path: Path, payload: Any) -> None:
    """``payload`` as indented JSON at ``path``, atomically."""
    write_atomic(path, json.dumps(payload, indent=2))
