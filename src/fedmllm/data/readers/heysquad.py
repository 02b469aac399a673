"""HeySQuAD (spoken SQuAD questions): the layout this reader assumes.

HeySQuAD pairs SQuAD v1.1 records with recordings of their questions (spoken by people, or by
a TTS system); UniFLoW asks the spoken question and scores the generated answer. We read a
local copy laid out as::

    <root>/train.json          SQuAD v1.1 JSON: data[].paragraphs[].{context, qas[]}
    <root>/dev.json            each qa: id, question (the transcript), answers[].text
    <root>/audio/train/<id>.wav   one recording per question id (.wav or .flac)
    <root>/audio/dev/<id>.flac

(the published release ships per-split audio folders keyed by the SQuAD question id; a copy
in another layout is renamed into this one, or ``audio_dir`` points at its folder). A sample
carries the recording as ``audio`` (a path, read through ``soundfile`` by the collator), the
written context plus an instruction as ``question`` (the question itself is only in the
sound), the first reference answer as ``answer``, and the transcript and every reference in
``meta``. Questions whose recording is missing are skipped and counted (a warning names the
first few).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fedmllm.data.readers.common import as_list, expect, read_json, record_meta, text
from fedmllm.data.schema import Sample

log = logging.getLogger(__name__)
NAME = "heysquad"
SPLITS = ("train", "dev")
AUDIO_SUFFIXES = (".wav", ".flac")
INSTRUCTION = "answer the spoken question from the passage."


def read_heysquad(
    root: str | Path, split: str = "train", audio_dir: str | Path | None = None
) -> list[Sample]:
    """HeySQuAD records of one split with their recordings.

    Args:
        root: The dataset folder (``train.json``, ``dev.json``, ``audio/``).
        split: ``train`` or ``dev``.
        audio_dir: Folder of ``<id>.wav``/``<id>.flac`` (default ``<root>/audio/<split>``).

    Returns:
        Audio-QA samples (``image=None``, ``modality="audio"``, ``task="vqa"``, open answers).

    Raises:
        ValueError: An unknown split, or a record without id, question or answer.
        DatasetNotFoundError: The JSON file or the audio folder is missing.
    """
    if split not in SPLITS:
        raise ValueError(f"heysquad: unknown split {split!r}; use one of {SPLITS}")
    root = Path(root)
    path = root / f"{split}.json"
    data = read_json(path, NAME)
    folder = expect(Path(audio_dir) if audio_dir else root / "audio" / split, NAME, "audio folder")
    articles = data.get("data") if isinstance(data, dict) else None
    samples, missing = [], []
    for article in as_list(articles, path, NAME):
        for paragraph in article.get("paragraphs", []):
            context = text(paragraph.get("context"))
            for qa in paragraph.get("qas", []):
                qid, question = text(qa.get("id")), text(qa.get("question"))
                answers = [
                    text(a.get("text")) for a in qa.get("answers", []) if text(a.get("text"))
                ]
                if not qid or not question or not answers or not context:
                    raise ValueError(
                        f"heysquad: {path}: record {qid or '<no id>'} lacks an id, question, "
                        "context or answer"
                    )
                audio = next(
                    (
                        folder / f"{qid}{s}"
                        for s in AUDIO_SUFFIXES
                        if (folder / f"{qid}{s}").is_file()
                    ),
                    None,
                )
                if audio is None:
                    missing.append(qid)
                    continue
                meta = record_meta(NAME, qid, split, path, transcript=question, answers=answers)
                prompt = f"{context} {INSTRUCTION}"
                samples.append(
                    Sample(
                        None,
                        "audio",
                        prompt,
                        answers[0],
                        "vqa",
                        "open",
                        meta=meta,
                        audio=str(audio),
                    )
                )
    if missing:
        log.warning(
            "heysquad: %d questions of %s have no recording in %s (e.g. %s); skipped",
            len(missing), split, folder, ", ".join(missing[:3]),
        )  # fmt: skip
    return samples
