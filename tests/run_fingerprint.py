"""A run's fingerprint: what must not move when code is reorganised without changing a rule.

Scores and communication bytes (results.json), every client's training losses per round
(history), and SHA-256 digests of the final global state and of each client's stored private
tensors (last.ckpt). Two runs with equal fingerprints trained the same numbers bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over sorted keys, shapes, dtypes and raw bytes of every tensor."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def optimizer_digest(state: dict[str, Any] | None) -> str | None:
    """SHA-256 of an optimiser's per-parameter tensors (in parameter order)."""
    if state is None:
        return None
    flat = {
        f"{idx}.{name}": value
        for idx, entry in state["state"].items()
        for name, value in entry.items()
        if isinstance(value, torch.Tensor)
    }
    return state_digest(flat)


def run_fingerprint(run_dir: Path) -> dict[str, Any]:
    """The fingerprint of a finished run directory (results.json and last.ckpt)."""
    results = json.loads((run_dir / "results.json").read_text())
    ckpt = torch.load(run_dir / "last.ckpt", weights_only=False)
    losses = {
        str(entry["round"]): {
            cid: {k: v for k, v in m.items() if k.startswith("loss")}
            for cid, m in entry["train"].items()
        }
        for entry in results["history"]
        if "train" in entry
    }
    private = {cid: state_digest(e["private"]) for cid, e in ckpt["client_store"].items()}
    moments = {cid: optimizer_digest(e["optimizer"]) for cid, e in ckpt["client_store"].items()}
    return {
        "method": results["method"],
        "scores": {cid: c["scores"] for cid, c in results["clients"].items()},
        "comm": results["comm"],
        "losses": losses,
        "global_state": state_digest(ckpt["global_state"]),
        "private_states": private,
        "optimizer_states": moments,
    }
