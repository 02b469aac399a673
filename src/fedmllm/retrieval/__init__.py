"""Retrieval-augmented prompts (LightFED): per-client FAISS case libraries.

``RetrievalAugmenter`` (Hydra group ``retrieval/``) rewrites each client's samples with the
cases retrieved from that client's own library; ``CaseLibrary`` is the index, ``CaseEncoder``
the vectors, ``RagTemplate`` the prompt. See docs/methods.md, section LightFED.
"""

from fedmllm.retrieval.augment import RetrievalAugmenter, case_id
from fedmllm.retrieval.encoders import CaseEncoder, hashed_text
from fedmllm.retrieval.library import Case, CaseLibrary
from fedmllm.retrieval.prompt import RagTemplate

__all__ = [
    "Case",
    "CaseEncoder",
    "CaseLibrary",
    "RagTemplate",
    "RetrievalAugmenter",
    "case_id",
    "hashed_text",
]
