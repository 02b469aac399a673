"""``crossmodal_text_synth``: ``crossmodal_synth`` plus a hospital that has reports but no images.

UniFLoW's mixed-modality setting (some clients hold only one modality, some only text): the
image clients are ``crossmodal_synth``'s (one imaging modality each), and the client ``text``
holds VQA samples without images (``image=None``, modality tag ``text``). Each of its questions
starts with the written findings of a scene (the public report wording) followed by a VQA
question about that scene in the clients' wording, so the answer is derivable from the text
alone (presence, count, kind, size, organ, modality and position are all in the findings;
"side" questions ask for the patient's side, the mirror of the findings' image side).

Every word is already in the benchmark vocabulary and the public split is unchanged, so the
tiny model pretrained (and cached) for ``fedmed_synth``/``crossmodal_synth`` is reused. The
text client is regenerated from its own random streams on each load (no images to render
into the cache, and it takes well under a second).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from fedmllm.data.benchmark import resolve_sizes
from fedmllm.data.schema import ClientData, Sample, validate_sample
from fedmllm.data.synthetic import ClientPlan, generate_client
from fedmllm.data.synthmed.anatomy import ORGANS_BY_MODALITY
from fedmllm.data.synthmed.benchmark import LESION_COUNTS, SplitSpec, SynthBenchmark, make_sample
from fedmllm.data.synthmed.crossmodal import DEFAULT_TRAIN_SIZE, load_crossmodal_synth
from fedmllm.data.synthmed.report import report_text
from fedmllm.data.synthmed.scene import MODALITIES

NAME = "crossmodal_text_synth"
TEXT = "text"
# Far from fedmed_synth's (0-6) and crossmodal_synth's (100-107) streams.
_TEXT_STREAM = 200
TEXT_SPEC = SplitSpec(
    name=TEXT,
    tasks={"vqa": 1.0},
    modalities=dict.fromkeys(MODALITIES, 1.0),
    organs=ORGANS_BY_MODALITY,
    styles=None,
    lesion_counts=LESION_COUNTS,
    phrasing="client",
    modality_tag=TEXT,
)
TEXT_PLAN = ClientPlan(TEXT_SPEC, TEXT, "vqa", TEXT, _TEXT_STREAM)


def text_sample(
    spec: SplitSpec, seed: int, stream: int, index: int, image_size: int, split: str
) -> Sample:
    """Text-only VQA sample ``index`` of a split: findings + question, no image."""
    # The scene is drawn (and rendered, then dropped) exactly as for an image client, so the
    # findings and the answer are both read off one scene record.
    drawn = make_sample(spec, seed, stream, index, image_size, split)
    scene = drawn.meta["scene"]
    question = f"{report_text(scene, 'public')} {drawn.question}"
    meta = {**drawn.meta, "source": NAME, "scene_modality": scene.modality}
    sample = Sample(None, TEXT, question, drawn.answer, "vqa", drawn.answer_type, meta=meta)
    validate_sample(sample, where=f"{TEXT}/{split}/{index:06d}")
    return sample


def text_client(seed: int, train_size: int, test_size: int, val_size: int = 0) -> ClientData:
    """The text-only hospital (its scenes are drawn at 32 pixels whatever the image clients')."""
    return generate_client(text_sample, TEXT_PLAN, seed, (train_size, test_size, val_size), 32)


def load_crossmodal_text_synth(
    cache_dir: str | Path | None = "data",
    seed: int = 0,
    train_sizes: dict[str, int] | None = None,
    test_size: int = 100,
    modalities: list[str] | tuple[str, ...] = (*MODALITIES, TEXT),
    partition: dict[str, Any] | None = None,
    val_size: int = 0,
    **images: Any,
) -> SynthBenchmark:
    """``crossmodal_synth``'s image clients plus the text-only client.

    Args:
        cache_dir: Cache root of the image clients (see ``load_crossmodal_synth``).
        seed: Non-negative seed, of the image clients and of the text client.
        train_sizes: Per task (``vqa`` applies to every client) or per client id
            (``ct``, ..., ``text``); default 300.
        test_size: Test samples per client.
        modalities: Client modalities; ``text`` is the text-only client, the others are
            imaging modalities (at least one).
        partition: Optional re-partition of the image clients; the text client is kept whole.
        val_size: Validation samples per client (streams of their own; see ``synthetic``).
        **images: The image clients' ``image_size`` and ``public_size`` (the public split is
            ``fedmed_synth``'s), as ``load_crossmodal_synth`` takes them.

    Returns:
        The benchmark named ``crossmodal_text_synth``; the text client comes last.
    """
    mods = [str(m) for m in modalities]
    if len(set(mods)) != len(mods):
        raise ValueError(f"modalities must be distinct, got {mods}")
    image_mods = [m for m in mods if m != TEXT]
    if not image_mods:
        raise ValueError(f"modalities {mods} name no imaging modality; add one of {MODALITIES}")
    sizes = resolve_sizes(train_sizes, [(m, "vqa") for m in mods], {"vqa": DEFAULT_TRAIN_SIZE})
    bench = load_crossmodal_synth(
        cache_dir,
        seed=seed,
        train_sizes={m: sizes[m] for m in image_mods},
        test_size=test_size,
        partition=partition,
        val_size=val_size,
        modalities=image_mods,
        **images,
    )
    clients = list(bench.clients)
    if TEXT in mods:
        clients.append(text_client(int(seed), sizes[TEXT], int(test_size), int(val_size)))
    return replace(bench, name=NAME, clients=clients)
