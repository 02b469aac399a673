"""The closed vocabulary of every text the benchmark can emit.

It is collected from the template tables themselves (placeholders removed) plus every value a
placeholder can take, so adding a template automatically extends the vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from fedmllm.data.synthmed import phrases, report, vqa
from fedmllm.data.synthmed.anatomy import ORGANS_BY_MODALITY
from fedmllm.data.synthmed.scene import LESION_KINDS, SIZE_CLASSES

_PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


def _strings(obj: Any) -> Iterator[str]:
    """Every string inside nested dicts (keys excluded), lists and tuples."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _strings(value)
    elif isinstance(obj, Iterable):
        for item in obj:
            yield from _strings(item)


def vocabulary() -> list[str]:
    """Every token any template (public or client) can emit, sorted.

    Tokens are lower-case words, single digits and single punctuation marks, as split by
    ``phrases.TOKEN_RE``; numbers in boxes are emitted digit by digit.
    """
    sources: list[Any] = [
        vqa.TEMPLATES,
        vqa.HALF_WORDS,
        report.REPORT_QUESTIONS,
        report.DETECTION_QUESTIONS,
        report.PUBLIC_WORDS,
        report.CLIENT_WORDS,
        phrases.PUNCTUATION,
        phrases.DIGITS,
        phrases.NUMBER_WORDS,
        phrases.YES_NO,
        phrases.MODALITY_WORDS,
        phrases.SIDES,
        phrases.HALVES,
        LESION_KINDS,
        SIZE_CLASSES,
        list(ORGANS_BY_MODALITY.values()),
    ]
    tokens: set[str] = set()
    for text in _strings(sources):
        tokens.update(phrases.tokenize(_PLACEHOLDER.sub(" ", text)))
    return sorted(tokens)
