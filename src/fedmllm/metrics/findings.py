"""A findings extractor for generated reports: which lesions a report states, with negation.

It reads a report as a list of *units* — the text between ``;``, ``.``, ``:`` and the word
``and`` — and maps words (and two-word phrases) to canonical values through a lexicon of
``field -> word -> value`` (fields ``kind``, ``size``, ``side``, ``half``), so one extractor
reads every site's synonyms and abbreviations. Per unit:

- a negation cue (``no``, ``without``, ``negative``, ``nad``) before a kind word negates it and
  every kind after it in the unit ("without nodule, mass or calcification"); nothing negated is
  reported;
- the first kind word that is not negated is one finding, with the unit's first size, side and
  half words; a unit with a side word and ``lung`` but no kind (``right lung:``) sets the side
  of the units that follow it;
- a number (word or digit) with no kind in its unit is the report's stated lesion count; ``no``
  with no kind states zero.

The count is the stated one if any, else the number of findings. This is the analogue of the
CheXpert labeller for the synthetic benchmarks: exact on their reports (tested against the
scene records), and a fair reader of generated text written in the same words.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

TOKEN_RE = re.compile(r"\d|[a-z]+|[^\sa-z\d]")
UNIT_BREAKS = frozenset({";", ".", ":", "and"})
NEGATIONS = frozenset({"no", "without", "negative", "nad"})
NUMBERS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
FIELDS = ("kind", "size", "side", "half")
Lexicon = Mapping[str, Mapping[str, str]]
LEXICONS = {"mrg_synth": "fedmllm.data.synthmed.mrg_styles:site_lexicon"}
"""Lexicons by name: ``module:function`` returning a :data:`Lexicon` (loaded when asked for, so
this room imports no benchmark)."""


@dataclass(frozen=True)
class Finding:
    """One stated lesion (``None``: the report does not say)."""

    kind: str
    size: str | None = None
    side: str | None = None
    half: str | None = None


@dataclass
class Findings:
    """What a report states: its findings and its lesion count."""

    findings: list[Finding] = field(default_factory=list)
    count: int = 0

    def tuples(self) -> Counter[tuple[str, str | None, str | None]]:
        """Multiset of ``(kind, side, half)``: what the clinical F1 compares."""
        return Counter((f.kind, f.side, f.half) for f in self.findings)

    def kinds(self) -> set[str]:
        """The kinds present (the per-report presence labels)."""
        return {f.kind for f in self.findings}


def load_lexicon(name: str) -> dict[str, dict[str, str]]:
    """The lexicon registered as ``name`` in :data:`LEXICONS`, or a ``module:function`` path."""
    target = LEXICONS.get(name, name)
    if ":" not in target:
        raise ValueError(
            f"findings lexicon {name!r} is unknown; use one of {sorted(LEXICONS)} or "
            "'package.module:function'"
        )
    module, func = target.split(":", 1)
    return {k: dict(v) for k, v in getattr(importlib.import_module(module), func)().items()}


def _units(text: str) -> list[list[str]]:
    units: list[list[str]] = [[]]
    for tok in TOKEN_RE.findall(text.lower()):
        if tok in UNIT_BREAKS:
            units.append([])
        else:
            units[-1].append(tok)
    return [u for u in units if u]


def _tag(unit: list[str], lexicon: Lexicon) -> list[tuple[str, str | None, str | None]]:
    """``(token, field, value)`` per word or matched two-word phrase (longest match first)."""
    out: list[tuple[str, str | None, str | None]] = []
    i = 0
    while i < len(unit):
        hit = None
        for n in (2, 1):
            phrase = " ".join(unit[i : i + n])
            if len(unit[i : i + n]) == n:
                hit = next(((f, lexicon[f][phrase]) for f in FIELDS if phrase in lexicon[f]), None)
            if hit:
                out.append((phrase, *hit))
                i += n
                break
        if not hit:
            out.append((unit[i], None, None))
            i += 1
    return out


def extract_findings(text: str, lexicon: Lexicon) -> Findings:
    """The findings ``text`` states (see the module docstring for the rules)."""
    lexicon = {f: lexicon.get(f, {}) for f in FIELDS}
    result, stated, context_side = Findings(), None, None
    for unit in _units(text):
        tagged = _tag(unit, lexicon)
        first = {f: next((v for _, g, v in tagged if g == f), None) for f in FIELDS}
        negated, kind = False, None
        for tok, f, value in tagged:
            negated = negated or tok in NEGATIONS
            if f == "kind" and not negated:
                kind = value
                break
        has_kind = any(f == "kind" for _, f, _ in tagged)
        if kind is not None:
            side = first["side"] or context_side
            result.findings.append(Finding(kind, first["size"], side, first["half"]))
        elif not has_kind:
            if first["side"] is not None and "lung" in unit:
                context_side = first["side"]
            number = next((NUMBERS.get(t, int(t) if t.isdigit() else None) for t in unit), None)
            if number is not None and stated is None:
                stated = number
            elif unit[0] in NEGATIONS and stated is None:
                stated = 0
    result.count = len(result.findings) if stated is None else stated
    return result


def finding_counts(pred: Findings, ref: Findings) -> dict[str, int]:
    """True/false positives and negatives of one report pair, for the clinical scores.

    ``tp/fp/fn``: over the ``(kind, side, half)`` multisets; ``kind_tp/fp/fn``: over the
    kinds present (three presence labels per report); ``count_ok``: the counts agree.
    """
    p, r = pred.tuples(), ref.tuples()
    tp = sum((p & r).values())
    pk, rk = pred.kinds(), ref.kinds()
    return {
        "tp": tp,
        "fp": sum(p.values()) - tp,
        "fn": sum(r.values()) - tp,
        "kind_tp": len(pk & rk),
        "kind_fp": len(pk - rk),
        "kind_fn": len(rk - pk),
        "count_ok": int(pred.count == ref.count),
    }


def f1(tp: float, fp: float, fn: float) -> float:
    """``2tp / (2tp + fp + fn)``; 1.0 when there is nothing to find and nothing was found."""
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2 * tp / denom
