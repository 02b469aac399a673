"""Where each client's private tensors live between the rounds it takes part in."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from fedmllm.types import AdapterState
from fedmllm.utils.io import torch_save_atomic


class ClientStore:
    """Private adapter tensors and optimiser state per client, on CPU or on disk.

    With ``directory`` set, each client's entry is written to ``<directory>/<client>.pt``
    and dropped from memory, so a federation of hundreds of clients costs memory for one.

    Args:
        directory: Where entries go (in memory when None).
        shared: The directory is shared with other processes (Flower nodes whose ClientApp
            runs in a fresh process each round, or in one of several simulation actors):
            every lookup reads the directory, so entries written elsewhere, before or after
            this store was made, are found. By default a new store starts empty and knows
            only what it wrote.
    """

    def __init__(self, directory: str | Path | None = None, shared: bool = False) -> None:
        self.directory = Path(directory) if directory is not None else None
        if shared and self.directory is None:
            raise ValueError("a shared client store needs a directory")
        self.shared = shared
        self._mem: dict[str, dict[str, Any]] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, client_id: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{client_id}.pt"

    def put(
        self, client_id: str, private: AdapterState, optimizer_state: dict[str, Any] | None
    ) -> None:
        """Keep ``client_id``'s private tensors and optimiser state (copied to CPU)."""
        entry = {
            "private": {k: v.detach().to("cpu", copy=True) for k, v in private.items()},
            "optimizer": _to_cpu(optimizer_state),
        }
        if self.directory is None:
            self._mem[client_id] = entry
        else:
            torch_save_atomic(entry, self._path(client_id))
            self._mem[client_id] = {}  # marks presence only

    def discard(self, client_id: str) -> None:
        """Forget ``client_id``'s entry (its file too), as if it had never been stored."""
        self._mem.pop(client_id, None)
        if self.directory is not None:
            self._path(client_id).unlink(missing_ok=True)

    def has(self, client_id: str) -> bool:
        if self.shared:
            return self._path(client_id).is_file()
        return client_id in self._mem

    def get(self, client_id: str) -> tuple[AdapterState, dict[str, Any] | None]:
        """Return ``(private_state, optimizer_state)``; empty state and ``None`` if unseen."""
        if not self.has(client_id):
            return {}, None
        entry = (
            self._mem[client_id] if self.directory is None else torch.load(self._path(client_id))
        )
        return entry["private"], entry["optimizer"]

    def client_ids(self) -> list[str]:
        if self.shared:
            assert self.directory is not None
            return sorted(p.stem for p in self.directory.glob("*.pt"))
        return sorted(self._mem)

    def state_dict(self) -> dict[str, Any]:
        """Everything stored, for a checkpoint."""
        return {
            cid: dict(zip(("private", "optimizer"), self.get(cid), strict=True))
            for cid in self.client_ids()
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._mem.clear()
        for cid, entry in state.items():
            unknown = set(entry) - {"private", "optimizer"}
            if unknown:
                raise KeyError(f"client store entry {cid!r} has unknown keys {sorted(unknown)}")
            self.put(cid, entry["private"], entry["optimizer"])


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)
