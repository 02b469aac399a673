"""Retrieval as a data-side prompt augmenter: each client's samples get their retrieved cases.

:class:`RetrievalAugmenter` builds one case library per client from that client's training
samples (or one pooled library for a pooled run), then rewrites every training sample (with
itself left out) and every test sample of the client from the client's own library, with the
fixed template of ``retrieval/prompt.py``. It runs once, on the frozen base, before adapters
exist; the round loop, methods and rules see ordinary samples. Latency per question (encode
one query, search one query) is measured on the test questions and returned with the run's
other retrieval facts for ``results.json``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from fedmllm.data.schema import ClientData, Sample
from fedmllm.models.pretrain import data_fingerprint
from fedmllm.retrieval.encoders import CaseEncoder
from fedmllm.retrieval.library import LIBRARY_VERSION, Case, CaseLibrary, cache_dir_for
from fedmllm.retrieval.prompt import CASE_TEMPLATE, CONTEXT_TEMPLATE, RagTemplate

log = logging.getLogger(__name__)
SCOPES = ("auto", "client", "pooled")
POOLED = "pooled"
_ENCODER_PARAMS = re.compile(r"vision|visual|projector|connector")


def case_id(client_id: str, index: int) -> str:
    """The id of training sample ``index`` of ``client_id`` (``<client>/train/<index>``)."""
    return f"{client_id}/train/{index}"


def encoder_fingerprint(engine: Any) -> str:
    """SHA-256 over the base model's image-encoder weights (names with vision/visual/projector/
    connector): what the vision-tower vectors depend on. Taken before adapters exist."""
    h = hashlib.sha256()
    for name, p in engine.model.named_parameters():
        if _ENCODER_PARAMS.search(name):
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


class RetrievalAugmenter:
    """Per-client FAISS case libraries and the prompts built from them.

    Args:
        k: Cases retrieved per question.
        scope: ``client`` (each client its own library: Fed+RAG), ``pooled`` (one library over
            every client's training cases: Centralized+RAG), ``auto`` (pooled exactly when the
            method trains on pooled data).
        image_encoder: ``vision_tower``, ``pixels`` or ``none`` (``retrieval/encoders.py``).
        text_encoder: ``hashing`` or ``none``.
        image_weight: Weight of the image cosine's part of the score (squared, see encoders).
        text_weight: Weight of the question-text part.
        text_dim: Width of the hashed text vector.
        augment_train: Put retrieved cases into training prompts too (leave-one-out); false
            trains on bare questions and retrieves only at test time.
        case_template: One case in the prompt (``{question}``, ``{answer}``).
        context_template: The question with its cases (``{cases}``, ``{question}``).
        separator: Between cases.
        cache_dir: Root of the library cache (``<cache_dir>/retrieval/``); None: no cache.
        latency_queries: Test questions per client timed one at a time (0: skip timing).
    """

    def __init__(
        self,
        k: int = 3,
        scope: str = "auto",
        image_encoder: str = "vision_tower",
        text_encoder: str = "hashing",
        image_weight: float = 1.0,
        text_weight: float = 1.0,
        text_dim: int = 256,
        augment_train: bool = True,
        case_template: str = CASE_TEMPLATE,
        context_template: str = CONTEXT_TEMPLATE,
        separator: str = " ",
        cache_dir: str | None = None,
        latency_queries: int = 50,
    ) -> None:
        if k < 1:
            raise ValueError(f"retrieval.k must be >= 1, got {k}")
        if scope not in SCOPES:
            raise ValueError(f"retrieval.scope must be one of {SCOPES}, got {scope!r}")
        if latency_queries < 0:
            raise ValueError(f"retrieval.latency_queries must be >= 0, got {latency_queries}")
        self.k, self.scope, self.augment_train = int(k), scope, bool(augment_train)
        self.encoder = CaseEncoder(image_encoder, text_encoder, image_weight, text_weight, text_dim)
        self.template = RagTemplate(case_template, context_template, separator)
        self.cache_dir, self.latency_queries = cache_dir, int(latency_queries)

    # ------------------------------------------------------------------ libraries
    def build_library(
        self, owner: str, cases: Sequence[tuple[str, Sample]], engine: Any
    ) -> tuple[CaseLibrary, dict[str, Any]]:
        """The library of ``cases`` (id, sample), from the cache when its key matches."""
        key = {
            "version": LIBRARY_VERSION,
            "owner": owner,
            "encoder": self.encoder.describe(),
            "weights": encoder_fingerprint(engine)
            if self.encoder.image_encoder == "vision_tower"
            else None,
            "ids": [cid for cid, _ in cases],
            "data": data_fingerprint([s for _, s in cases]),
        }
        where = cache_dir_for(self.cache_dir, owner, key) if self.cache_dir else None
        t0 = time.perf_counter()
        lib = CaseLibrary.load(where, key) if where is not None else None
        cached = lib is not None
        if lib is None:
            vectors = self.encoder.encode([s for _, s in cases], engine)
            lib = CaseLibrary(owner, vectors, [Case(cid, s.question, s.answer) for cid, s in cases])
            if where is not None:
                lib.save(where, key)
        info = {"size": len(lib), "build_s": time.perf_counter() - t0, "from_cache": cached}
        return lib, info

    def _libraries(
        self, clients: Sequence[ClientData], engine: Any, pooled: bool
    ) -> tuple[dict[str, CaseLibrary], dict[str, dict[str, Any]]]:
        """Client id -> the library it searches, and facts per library owner."""
        scope = self.scope if self.scope != "auto" else (POOLED if pooled else "client")
        own = {
            c.client_id: [(case_id(c.client_id, i), s) for i, s in enumerate(c.train)]
            for c in clients
        }
        if scope == POOLED:
            lib, info = self.build_library(
                POOLED, [x for c in clients for x in own[c.client_id]], engine
            )
            return {c.client_id: lib for c in clients}, {POOLED: info}
        libs, infos = {}, {}
        for c in clients:
            libs[c.client_id], infos[c.client_id] = self.build_library(
                c.client_id, own[c.client_id], engine
            )
        return libs, infos

    # ------------------------------------------------------------------ prompts
    def _rewrite(
        self,
        lib: CaseLibrary,
        samples: Sequence[Sample],
        vectors: np.ndarray,
        exclude: list[str | None] | None,
    ) -> list[Sample]:
        scores, rows = lib.search(vectors, self.k, exclude)
        out = []
        for s, sc, rw in zip(samples, scores, rows, strict=True):
            kept = [(lib.cases[r], v) for r, v in zip(rw, sc, strict=True) if r >= 0]
            out.append(self.template.augment(s, [c for c, _ in kept], [v for _, v in kept]))
        return out

    def _latency(self, lib: CaseLibrary, samples: Sequence[Sample], engine: Any) -> dict:
        """Mean ms per question to encode one query and to search it, one at a time."""
        enc = srch = 0.0
        n = min(self.latency_queries, len(samples))
        for s in samples[:n]:
            t0 = time.perf_counter()
            vec = self.encoder.encode([s], engine)
            t1 = time.perf_counter()
            lib.search(vec, self.k)
            enc, srch = enc + (t1 - t0), srch + (time.perf_counter() - t1)
        if n == 0:
            return {}
        return {
            "encode_ms_per_question": 1e3 * enc / n,
            "search_ms_per_question": 1e3 * srch / n,
            "ms_per_question": 1e3 * (enc + srch) / n,
            "timed_questions": n,
        }

    def apply(
        self, clients: Sequence[ClientData], engine: Any, pooled: bool = False
    ) -> tuple[list[ClientData], dict[str, Any]]:
        """Clients whose samples carry their retrieved cases, and the facts for results.json.

        Args:
            clients: The benchmark's clients.
            engine: The shared engine, adapters not yet injected (its vision tower encodes).
            pooled: Whether the method trains one model on all clients' data (scope ``auto``).

        Returns:
            ``(clients, facts)``: the new clients (same ids, tasks, order) and a dict with the
            settings, per-client library size, build time, cache use, latency and the share of
            test questions whose best case has the same answer (``top1_answer_match``).
        """
        libs, infos = self._libraries(clients, engine, pooled)
        out, per_client = [], {}
        for c in clients:
            lib = libs[c.client_id]
            train = list(c.train)
            if self.augment_train and train:
                ids = [case_id(c.client_id, i) for i in range(len(train))]
                # a client's cases are consecutive rows of its library (pooled: of the union)
                first = next(j for j, x in enumerate(lib.cases) if x.case_id == ids[0])
                vecs = lib.index.reconstruct_n(first, len(train))
                train = self._rewrite(lib, train, vecs, list(ids))
            # Held-out samples (test, and validation where the benchmark has it) retrieve from
            # the whole library, as a new patient's question would.
            test, val = list(c.test), list(getattr(c, "val", []))
            if test:
                test = self._rewrite(lib, test, self.encoder.encode(test, engine), None)
            if val:
                val = self._rewrite(lib, val, self.encoder.encode(val, engine), None)
            per_client[c.client_id] = {
                "library": lib.owner,
                **self._latency(lib, c.test, engine),
                "top1_answer_match": _top1_match(lib, test),
            }
            out.append(replace(c, train=train, test=test, val=val))
        facts = {
            "k": self.k,
            "scope": next(iter(infos)) if POOLED in infos else "client",
            "augment_train": self.augment_train,
            "encoder": self.encoder.describe(),
            "template": [self.template.case_template, self.template.context_template],
            "libraries": infos,
            "clients": per_client,
        }
        timed = [v["ms_per_question"] for v in per_client.values() if "ms_per_question" in v]
        if timed:
            facts["ms_per_question"] = float(np.mean(timed))
        log.info(
            "retrieval: k=%d, %d libraries (%s), %.2f ms/question",
            self.k,
            len(infos),
            ", ".join(f"{o}: {i['size']}" for o, i in infos.items()),
            facts.get("ms_per_question", float("nan")),
        )
        return out, facts


def _top1_match(lib: CaseLibrary, samples: Sequence[Sample]) -> float | None:
    """Share of ``samples`` whose best retrieved case has the sample's own answer."""
    answers = {c.case_id: c.answer for c in lib.cases}
    hits = [
        answers[s.meta["retrieved"][0]["case_id"]].strip().lower() == s.answer.strip().lower()
        for s in samples
        if s.meta.get("retrieved")
    ]
    return float(np.mean(hits)) if hits else None
