"""Text normalisation for exact match and the tokeniser shared by BLEU and ROUGE-L."""

from __future__ import annotations

import re

# A decimal point or thousands comma between digits belongs to the number ("3.5", "1,200"), so
# it matches the first branch and is kept; any other punctuation mark is captured in group 1.
_PUNCT = re.compile(r"(?<=\d)[.,](?=\d)|([^\w\s]|_)")
_APOSTROPHES = re.compile(r"['\u2019`]")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_SPACES = re.compile(r"\s+")

# Tokens: numbers with internal "." or "," (kept whole, as 13a does), words possibly joined by
# internal hyphens or apostrophes (13a does not split "-" or "'" either), else one symbol.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:['\-][^\W_]+)*|[^\w\s]|_")


def normalize_answer(text: str) -> str:
    """Normalise a short answer the way VQA-style exact match does.

    Steps, in order: lower-case; keep decimal points and commas inside numbers; delete
    apostrophes (so "patient's" equals "patients"); replace every other punctuation mark by a
    space (so "left-sided" equals "left sided" and "yes." equals "yes"); drop the articles
    "a", "an", "the"; collapse runs of whitespace and strip.

    Args:
        text: A generated or reference answer.

    Returns:
        The normalised answer; possibly the empty string.
    """
    text = text.lower()
    text = _APOSTROPHES.sub("", text)
    text = _PUNCT.sub(lambda m: " " if m.group(1) else m.group(0), text)
    text = _ARTICLES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def tokenize(text: str, punctuation: bool = True) -> list[str]:
    """Split text into lower-cased word and punctuation tokens.

    This is the project's tokeniser for BLEU and ROUGE-L, in the spirit of sacreBLEU's "13a"
    applied to lower-cased text: words (letters and digits) are tokens, hyphenated words and
    contractions stay whole ("ground-glass", "don't"), numbers keep their inner decimal point
    or comma ("3.5", "1,200"), and every other punctuation mark is a token of its own. It
    differs from 13a only on rare patterns (e.g. 13a splits a hyphen after a digit, "3-4").

    Args:
        text: Any text.
        punctuation: Keep punctuation tokens. ROUGE-L passes False, matching the reference
            rouge-score package, which discards punctuation.

    Returns:
        The tokens in order.
    """
    tokens = _TOKEN.findall(text.lower())
    if punctuation:
        return tokens
    return [t for t in tokens if any(c.isalnum() for c in t)]
