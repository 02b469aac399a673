"""A client's case library: its own training cases in a FAISS inner-product index.

The library holds the vectors of one client's training samples and their question/answer
texts; nothing else. It is built once per client, cached on disk keyed by the encoder, the
base model's encoder weights and the client's data (never by adapters or rounds), and
searched with ``faiss.IndexFlatIP`` — exact inner product, so on unit-norm parts a weighted
sum of cosines (``retrieval/encoders.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedmllm.data.cache import _atomic_write

log = logging.getLogger(__name__)


def faiss_module() -> Any:
    """The ``faiss`` module, imported quietly (its loader logs every CPU build it tries)."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


INDEX_FILE, CASES_FILE = "index.faiss", "cases.json"
LIBRARY_VERSION = 1  # bump when the vectors or the stored cases change meaning


@dataclass(frozen=True)
class Case:
    """One retrievable case: its question and answer, and the case's id in its library."""

    case_id: str
    question: str
    answer: str


class CaseLibrary:
    """One owner's cases and their FAISS index (exact inner product).

    Args:
        owner: The client id (or ``"pooled"``) whose cases these are.
        vectors: ``N x D`` float32 case vectors.
        cases: The N cases, row-aligned with ``vectors``.
    """

    def __init__(self, owner: str, vectors: np.ndarray, cases: list[Case]) -> None:
        if vectors.ndim != 2 or len(vectors) != len(cases):
            raise ValueError(
                f"case library {owner!r}: {len(cases)} cases but vectors of shape {vectors.shape}"
            )
        if not cases:
            raise ValueError(f"case library {owner!r}: a client with no training cases")
        self.owner, self.cases = owner, list(cases)
        self.index = faiss_module().IndexFlatIP(int(vectors.shape[1]))
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        """Vector width."""
        return self.index.d

    def search(
        self, queries: np.ndarray, k: int, exclude: list[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows per query (scores descending, FAISS's order on ties).

        Args:
            queries: ``Q x D`` float32.
            k: Cases per query; fewer when the library is smaller (missing rows are ``-1``).
            exclude: Per query, a case id that may not be returned (the query itself when it
                is a training case of this library: leave-one-out).

        Returns:
            ``(scores, rows)``, each ``Q x k``.
        """
        if k < 1:
            raise ValueError(f"retrieval.k must be >= 1, got {k}")
        extra = 1 if exclude is not None else 0
        depth = min(k + extra, len(self))
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_r = np.full((len(queries), k), -1, dtype=np.int64)
        for q in range(len(queries)):
            banned = exclude[q] if exclude is not None else None
            kept = [(s, r) for s, r in zip(scores[q], rows[q], strict=True) if r >= 0]
            kept = [(s, r) for s, r in kept if self.cases[r].case_id != banned][:k]
            for j, (s, r) in enumerate(kept):
                out_s[q, j], out_r[q, j] = s, r
        return out_s, out_r

    def save(self, directory: Path, key: dict) -> None:
        """Write the index and the cases atomically, the cases file (with the key) last."""
        directory.mkdir(parents=True, exist_ok=True)
        blob = faiss_module().serialize_index(self.index).tobytes()
        _atomic_write(directory / INDEX_FILE, lambda h: h.write(blob))
        payload = {
            "key": key,
            "owner": self.owner,
            "index_sha256": hashlib.sha256(blob).hexdigest(),
            "cases": [[c.case_id, c.question, c.answer] for c in self.cases],
        }
        _atomic_write(directory / CASES_FILE, lambda h: h.write(json.dumps(payload).encode()))

    @classmethod
    def load(cls, directory: Path, key: dict) -> CaseLibrary | None:
        """A cached library whose key and checksum match, else None (logged when stale)."""
        cases_path, index_path = directory / CASES_FILE, directory / INDEX_FILE
        if not cases_path.exists() or not index_path.exists():
            return None
        try:
            payload = json.loads(cases_path.read_text())
            blob = index_path.read_bytes()
            if payload["key"] != key or hashlib.sha256(blob).hexdigest() != payload["index_sha256"]:
                raise ValueError("key or checksum differs")
            index = faiss_module().deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            log.warning("case library cache %s unusable (%s); rebuilding", directory, err)
            return None
        lib = cls.__new__(cls)
        lib.owner, lib.index = payload["owner"], index
        lib.cases = [Case(*row) for row in payload["cases"]]
        return lib


def cache_dir_for(root: str | Path, owner: str, key: dict) -> Path:
    """``<root>/retrieval/<owner>-<hash of key>/``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in owner)
    return Path(root) / "retrieval" / f"{safe}-{digest}"
