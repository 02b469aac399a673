"""``mrg_synth``: multi-site report generation under two kinds of heterogeneity (FedMRG).

Three to five hospitals (sites ``a`` .. ``e``) all write chest radiograph reports. They differ
in what their images look like — each site's scanner draws mostly one of the four X-ray
sub-styles (``styles.py``), site ``d`` mostly the "site scanner" the public split never shows —
and in how they write (``mrg_styles.py``: headers, synonyms, abbreviations, sentence and lesion
order). Scenes come from ``fedmed_synth``'s generator (same scene records, same renderer), so
every report is read off the record its image was drawn from, and the findings extractor can be
checked against it. The public split is ``fedmed_synth``'s, so the pretrained tiny model is
shared with it whenever the vocabulary is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from fedmllm.data.schema import Sample
from fedmllm.data.synthetic import ClientPlan, Sampler
from fedmllm.data.synthmed.benchmark import (
    FEDMED_SYNTH,
    LESION_COUNTS,
    SAMPLER,
    SplitSpec,
    SynthBenchmark,
    make_sample,
)
from fedmllm.data.synthmed.mrg_styles import SITE_NAMES, site_report, site_words

NAME = "mrg_synth"
VERSION = 1
DEFAULT_TRAIN_SIZE = 200
DEFAULT_SITES = ("a", "b", "c", "d")
# Streams far from fedmed_synth's (1-6) and crossmodal_synth's (100-107); two per site.
_STREAM_BASE = 200
# X-ray sub-style weights of each site's scanner, and its mix of 0..3 lesions.
_SCANNERS = {
    "a": (0.7, 0.1, 0.1, 0.1),
    "b": (0.1, 0.7, 0.1, 0.1),
    "c": (0.1, 0.1, 0.7, 0.1),
    "d": (0.05, 0.05, 0.1, 0.8),
    "e": (0.25, 0.25, 0.25, 0.25),
}
_LESIONS = {
    "a": LESION_COUNTS,
    "b": (0.3, 0.35, 0.2, 0.15),
    "c": (0.2, 0.3, 0.3, 0.2),
    "d": (0.15, 0.35, 0.3, 0.2),
    "e": (0.3, 0.4, 0.2, 0.1),
}


@dataclass
class MRGBenchmark(SynthBenchmark):
    """``mrg_synth``: report clients scored with the clinical-efficacy metric too."""

    metrics: ClassVar[dict[str, list[str]]] = {"report": ["bleu", "rouge", "clinical"]}

    def vocabulary(self) -> list[str]:
        """The template vocabulary plus every word a site can write."""
        return sorted(set(super().vocabulary()) | set(site_words()))


def site_spec(site: str) -> SplitSpec:
    """The split spec of hospital ``site`` (its ``phrasing`` is the site name)."""
    if site not in SITE_NAMES:
        raise ValueError(f"benchmark.sites: unknown site {site!r}; use a subset of {SITE_NAMES}")
    return SplitSpec(
        name=site,
        tasks={"report": 1.0},
        modalities={"xray": 1.0},
        organs={"xray": ("lung",)},
        styles=_SCANNERS[site],
        lesion_counts=_LESIONS[site],
        phrasing=site,
        modality_tag="xray",
    )


def make_mrg_sample(
    spec: SplitSpec, seed: int, stream: int, index: int, image_size: int, split: str
) -> Sample:
    """``fedmed_synth``'s sample of a stream, its report rewritten in the site's style."""
    if spec.phrasing not in SITE_NAMES:  # the public split
        return make_sample(spec, seed, stream, index, image_size, split)
    base = make_sample(replace(spec, phrasing="client"), seed, stream, index, image_size, split)
    scene = base.meta["scene"]
    meta = {**base.meta, "source": NAME, "phrasing": spec.phrasing, "site": spec.phrasing}
    return replace(base, answer=site_report(scene, spec.phrasing), meta=meta)


def _options(sites: Sequence[str] = DEFAULT_SITES) -> dict[str, Any]:
    """``sites``: the hospitals, 3 to 5 distinct names of ``SITE_NAMES``."""
    names = [str(s) for s in sites]
    if not 3 <= len(names) <= 5 or len(set(names)) != len(names):
        raise ValueError(f"benchmark.sites must list 3 to 5 distinct sites, got {names}")
    for s in names:
        site_spec(s)
    return {"sites": names}


def _clients(args: dict[str, Any]) -> list[ClientPlan]:
    return [
        ClientPlan(site_spec(s), s, "report", "xray", _STREAM_BASE + 2 * SITE_NAMES.index(s))
        for s in args["sites"]
    ]


MRG_SYNTH = replace(
    FEDMED_SYNTH,
    name=NAME,
    version=VERSION,
    sampler=Sampler(MRGBenchmark, make_mrg_sample, SAMPLER.public, SAMPLER.scene_from_dict),
    clients=_clients,
    default_sizes={"report": DEFAULT_TRAIN_SIZE},
    options=_options,
)
# The loader (``configs/benchmark/mrg_synth.yaml``): ``train_sizes`` keyed by ``report`` (every
# site) or by site id; the option ``sites`` lists the hospitals.
load_mrg_synth = MRG_SYNTH.load
