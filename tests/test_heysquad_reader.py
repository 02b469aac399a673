"""The HeySQuAD-layout reader on a fixture written here (SQuAD JSON + WAV/FLAC recordings)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from fedmllm.data.audio import AudioFeatures
from fedmllm.data.readers.common import DatasetNotFoundError
from fedmllm.data.readers.heysquad import read_heysquad

CONTEXT = "the nile flows north through egypt into the sea."


def _fixture(root, with_flac: bool = True) -> None:
    def qa(qid: str, question: str, *answers: str) -> dict:
        return {"id": qid, "question": question, "answers": [{"text": a} for a in answers]}

    qas = [
        qa("q1", "where does the nile flow?", "north", "north through egypt"),
        qa("q2", "what country?", "egypt"),
        qa("q3", "no recording for this one?", "sea"),
    ]
    data = {
        "version": "1.1",
        "data": [{"title": "nile", "paragraphs": [{"context": CONTEXT, "qas": qas}]}],
    }
    (root / "dev.json").write_text(json.dumps(data))
    folder = root / "audio" / "dev"
    folder.mkdir(parents=True)
    t = np.arange(16000) / 16000
    soundfile.write(folder / "q1.wav", 0.3 * np.sin(2 * np.pi * 500 * t), 16000)
    if with_flac:
        soundfile.write(folder / "q2.flac", 0.3 * np.sin(2 * np.pi * 1500 * t[:8000]), 16000)


def test_reads_records_with_their_recordings_and_skips_missing_ones(tmp_path, caplog):
    _fixture(tmp_path)
    samples = read_heysquad(tmp_path, "dev")
    assert [s.meta["id"] for s in samples] == ["heysquad/q1", "heysquad/q2"]
    q1, q2 = samples
    assert q1.image is None and q1.modality == "audio" and q1.task == "vqa"
    assert q1.answer == "north" and q1.meta["answers"] == ["north", "north through egypt"]
    assert q1.meta["transcript"] == "where does the nile flow?"
    assert q1.question.startswith(CONTEXT) and "where does" not in q1.question  # spoken only
    assert q1.audio.endswith("q1.wav") and q2.audio.endswith("q2.flac")
    assert "have no recording" in caplog.text and "q3" in caplog.text
    # The recordings decode through soundfile at the features' rate: 1 s and 0.5 s of tone.
    feats = AudioFeatures()
    w1, w2 = feats.waveform(q1.audio), feats.waveform(q2.audio)
    assert np.abs(w1).max() == pytest.approx(0.3, abs=0.01)
    assert np.abs(w2[:3900]).max() == pytest.approx(0.3, abs=0.01) and not w2[4100:].any()
    mel = feats.log_mel(q2.audio)
    assert mel.shape == (16, 32)


def test_missing_files_and_bad_records_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown split 'test'"):
        read_heysquad(tmp_path, "test")
    with pytest.raises(DatasetNotFoundError, match="dev.json"):
        read_heysquad(tmp_path, "dev")
    _fixture(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="audio folder"):
        read_heysquad(tmp_path, "dev", audio_dir=tmp_path / "nowhere")
    bad = {
        "data": [
            {
                "paragraphs": [
                    {"context": CONTEXT, "qas": [{"id": "q9", "question": "x?", "answers": []}]}
                ]
            }
        ]
    }
    (tmp_path / "dev.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="q9 lacks"):
        read_heysquad(tmp_path, "dev")
