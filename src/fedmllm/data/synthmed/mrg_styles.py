"""Site reporting styles of ``mrg_synth``: five hospitals write the same findings differently.

Every site writes a chest radiograph report from the scene record, but with its own section
headers, terminology (synonyms for the lesion kinds and sizes), abbreviations, sentence order
(impression first or last) and lesion order (largest first, smallest first, grouped by side).
Each table below is the whole of a site's wording; :func:`site_lexicon` and
:func:`site_words` read the tables, so the findings extractor and the tiny model's vocabulary
always agree with what a site can write.

A lesion is written as one *finding unit* (kind, size, side, zone); units are separated by
``;``, ``.`` or `` and ``, and a unit never holds two lesions — the findings extractor
(``fedmllm.metrics.findings``) relies on this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fedmllm.data.synthmed.phrases import NUMBER_WORDS, image_half, patient_side, tokenize
from fedmllm.data.synthmed.scene import Lesion, Scene

_PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


@dataclass(frozen=True)
class SiteStyle:
    """How one site writes a report.

    Attributes:
        name: Site id (``a`` .. ``e``).
        head: Text before the findings (section header and view line).
        clear: The whole findings text of a study without a lesion (negated wording).
        count: The count sentence, ``{n}`` a number (word or digit), ``{noun}`` the noun.
        noun: Singular and plural noun of the count sentence.
        item: One finding unit; placeholders ``{size} {kind} {side} {half}``.
        joiner: Between units (``"; "`` or ``" and "``).
        kind: Scene kind -> the site's word(s).
        size: Scene size class -> the site's word.
        side: ``left``/``right`` -> the site's word.
        half: ``upper``/``lower`` -> the site's word.
        impression: ``(normal, abnormal)`` closing (or opening) sentence.
        impression_first: Put the impression before the findings.
        order: ``largest`` (scene order), ``smallest`` or ``side`` (right lung then left).
        digits: Write the count with a digit instead of a word.
        side_headers: Group units under ``"<side> lung:"`` headers (units then omit the side).
    """

    name: str
    head: str
    clear: str
    count: str
    noun: tuple[str, str]
    item: str
    joiner: str
    kind: dict[str, str]
    size: dict[str, str]
    side: dict[str, str] = field(default_factory=lambda: {"left": "left", "right": "right"})
    half: dict[str, str] = field(default_factory=lambda: {"upper": "upper", "lower": "lower"})
    impression: tuple[str, str] = ("impression: normal study.", "impression: abnormal study.")
    impression_first: bool = False
    order: str = "largest"
    digits: bool = False
    side_headers: bool = False


SITES: dict[str, SiteStyle] = {
    # Structured, the default client wording of fedmed_synth.
    "a": SiteStyle(
        "a",
        head="findings: frontal chest radiograph.",
        clear="no focal lesion. the lungs are clear.",
        count="{n} {noun}:",
        noun=("focal lesion", "focal lesions"),
        item="{size} {kind}, {side} {half} zone",
        joiner="; ",
        kind={"cyst": "cyst", "tumor": "mass", "calcification": "calcification"},
        size={"small": "small", "medium": "moderate", "large": "large"},
        impression=("impression: no acute disease.", "impression: abnormal study."),
    ),
    # Narrative prose, impression first, British spelling.
    "b": SiteStyle(
        "b",
        head="findings:",
        clear="the lungs are clear, without any focal lesion.",
        count="{n} {noun} noted.",
        noun=("abnormality", "abnormalities"),
        item="a {size} {kind} in the {side} {half} zone",
        joiner=" and ",
        kind={"cyst": "cystic lesion", "tumor": "tumour", "calcification": "calcific focus"},
        size={"small": "small", "medium": "medium", "large": "large"},
        impression=("conclusion: normal chest.", "conclusion: abnormal chest."),
        impression_first=True,
    ),
    # Terse dictation with abbreviations, smallest first, digits.
    "c": SiteStyle(
        "c",
        head="cxr:",
        clear="nad. no lesion.",
        count="{n} {noun}:",
        noun=("les", "les"),
        item="{side} {half} {kind} {size}",
        joiner="; ",
        kind={"cyst": "cyst", "tumor": "mass", "calcification": "calc"},
        size={"small": "sm", "medium": "med", "large": "lg"},
        side={"left": "lt", "right": "rt"},
        half={"upper": "up", "lower": "low"},
        impression=("imp: normal.", "imp: abnormal."),
        order="smallest",
        digits=True,
    ),
    # Grouped by lung, other terminology (nodule, granuloma).
    "d": SiteStyle(
        "d",
        head="technique: pa view. observations:",
        clear="both lungs clear without nodule, mass or calcification.",
        count="{n} {noun} seen.",
        noun=("opacity", "opacities"),
        item="{size} {kind} in the {half} zone",
        joiner="; ",
        kind={"cyst": "bulla", "tumor": "nodule", "calcification": "calcified granuloma"},
        size={"small": "small", "medium": "intermediate", "large": "large"},
        impression=("opinion: no abnormality.", "opinion: abnormal."),
        order="side",
        side_headers=True,
    ),
    # Short lines, lobes instead of zones, impression first.
    "e": SiteStyle(
        "e",
        head="chest x ray.",
        clear="negative for lesion.",
        count="{n} {noun}:",
        noun=("lesion", "lesions"),
        item="{kind} of {size} size, {side} {half} lobe",
        joiner="; ",
        kind={"cyst": "cyst", "tumor": "neoplasm", "calcification": "calcified focus"},
        size={"small": "small", "medium": "medium", "large": "large"},
        impression=("summary: normal.", "summary: abnormal."),
        impression_first=True,
    ),
}
SITE_NAMES = tuple(SITES)


def _ordered(scene: Scene, style: SiteStyle) -> list[Lesion]:
    lesions = list(scene.lesions)  # largest first
    if style.order == "smallest":
        return lesions[::-1]
    if style.order == "side":  # right lung first (patient side), then by size
        return sorted(lesions, key=lambda les: patient_side(les, scene.image_size) != "right")
    return lesions


def _unit(les: Lesion, scene: Scene, style: SiteStyle) -> str:
    size = scene.image_size
    return style.item.format(
        size=style.size[les.size],
        kind=style.kind[les.kind],
        side=style.side[patient_side(les, size)],
        half=style.half[image_half(les, size)],
    )


def _findings(scene: Scene, style: SiteStyle) -> str:
    n = len(scene.lesions)
    if n == 0:
        return style.clear
    number = str(n) if style.digits else NUMBER_WORDS[n]
    count = style.count.format(n=number, noun=style.noun[0 if n == 1 else 1])
    lesions = _ordered(scene, style)
    if not style.side_headers:
        return f"{count} {style.joiner.join(_unit(les, scene, style) for les in lesions)}."
    groups: list[str] = []
    for side in ("right", "left"):
        units = [
            _unit(les, scene, style)
            for les in lesions
            if patient_side(les, scene.image_size) == side
        ]
        if units:
            groups.append(f"{style.side[side]} lung: {style.joiner.join(units)}.")
    return f"{count} {' '.join(groups)}"


def site_report(scene: Scene, site: str) -> str:
    """The report of ``scene`` as site ``site`` writes it."""
    if site not in SITES:
        raise ValueError(f"unknown mrg_synth site {site!r}; use one of {SITE_NAMES}")
    style = SITES[site]
    impression = style.impression[1 if scene.lesions else 0]
    body = f"{style.head} {_findings(scene, style)}"
    return f"{impression} {body}" if style.impression_first else f"{body} {impression}"


def site_words() -> list[str]:
    """Every token any site can write (added to the benchmark's vocabulary)."""
    texts: list[str] = [" ".join(str(d) for d in range(4)), " lung: "]
    for style in SITES.values():
        texts += [style.head, style.clear, style.count, style.item, style.joiner, *style.noun]
        texts += [*style.impression]
        for table in (style.kind, style.size, style.side, style.half):
            texts += list(table.values())
    return sorted({t for text in texts for t in tokenize(_PLACEHOLDER.sub(" ", text))})


def site_lexicon() -> dict[str, dict[str, str]]:
    """Word (or two-word phrase) -> canonical value, per field, over all sites.

    Fields: ``kind`` (``cyst``/``tumor``/``calcification``), ``size``, ``side``, ``half``.
    Raises if two sites use one word for different values (the extractor could not read it).
    """
    lex: dict[str, dict[str, str]] = {"kind": {}, "size": {}, "side": {}, "half": {}}
    for style in SITES.values():
        tables = {"kind": style.kind, "size": style.size, "side": style.side, "half": style.half}
        for field_name, table in tables.items():
            for canonical, word in table.items():
                seen = lex[field_name].setdefault(word, canonical)
                if seen != canonical:
                    raise ValueError(f"sites disagree on {word!r}: {seen} vs {canonical}")
    return lex
