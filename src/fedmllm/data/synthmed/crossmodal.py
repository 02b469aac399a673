"""``crossmodal_synth``: one imaging modality per client (the X-FLoRA setting).

Four hospitals by default, ``ct``, ``mri``, ``xray`` and ``us``; each holds VQA samples of its
own modality only (every organ that modality shows in ``fedmed_synth``), written in the
clients' wording, with the clients' sub-style mix (half of the images from the "site scanner"
sub-style the public split never shows). So the clients differ first of all in what their
images look like, while the questions are drawn from one shared distribution.

The public split is ``fedmed_synth``'s public split (same random stream, same arguments give
the same samples), so both benchmarks pretrain, and cache, the same tiny model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fedmllm.data.synthetic import ClientPlan
from fedmllm.data.synthmed.anatomy import ORGANS_BY_MODALITY
from fedmllm.data.synthmed.benchmark import FEDMED_SYNTH, LESION_COUNTS, SplitSpec
from fedmllm.data.synthmed.scene import MODALITIES

NAME = "crossmodal_synth"
VERSION = 1
DEFAULT_TRAIN_SIZE = 300
# Client streams start here, far from fedmed_synth's (0 public, 1-6 clients); each modality
# owns two fixed streams, so choosing a subset of modalities never changes a client's data.
_STREAM_BASE = 100
_CLIENT_STYLES = (0.15, 0.15, 0.2, 0.5)


def client_spec(modality: str) -> SplitSpec:
    """The split spec of the client holding ``modality``."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; use a subset of {MODALITIES}")
    return SplitSpec(
        name=modality,
        tasks={"vqa": 1.0},
        modalities={modality: 1.0},
        organs={modality: ORGANS_BY_MODALITY[modality]},
        styles=_CLIENT_STYLES,
        lesion_counts=LESION_COUNTS,
        phrasing="client",
        modality_tag=modality,
    )


def _options(modalities: Sequence[str] = MODALITIES) -> dict[str, Any]:
    """``modalities``: the clients, one per imaging modality, in order (distinct, non-empty)."""
    mods = [str(m) for m in modalities]
    if not mods or len(set(mods)) != len(mods):
        raise ValueError(f"modalities must be distinct and non-empty, got {mods}")
    for m in mods:
        client_spec(m)  # validates the name
    return {"modalities": mods}


def _clients(args: dict[str, Any]) -> list[ClientPlan]:
    return [
        ClientPlan(client_spec(m), m, "vqa", m, _STREAM_BASE + 2 * MODALITIES.index(m))
        for m in args["modalities"]
    ]


# fedmed_synth's generator (same samples, same public split) with one client per modality.
CROSSMODAL_SYNTH = replace(
    FEDMED_SYNTH,
    name=NAME,
    version=VERSION,
    clients=_clients,
    default_sizes={"vqa": DEFAULT_TRAIN_SIZE},
    options=_options,
)
# The loader (``configs/benchmark/crossmodal_synth.yaml``): ``train_sizes`` keyed by ``vqa``
# (every client) or by client id (``ct``, ``mri``, ``xray``, ``us``), default 300 per client;
# the option ``modalities`` lists the clients. Without ``partition``, client ``m`` has
# ``task="vqa"`` and ``modality=m``.
load_crossmodal_synth = CROSSMODAL_SYNTH.load
