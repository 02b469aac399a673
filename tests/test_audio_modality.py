"""Audio as a modality: features, clips, the hearing model, the audio side of the II-stage
groups, the by-round schedule (T = 0.5 x rounds) on both encoders."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from multimodal_helpers import TINY, cpu_fabric, make_samples, randomise

from fedmllm.data.audio import AudioFeatures
from fedmllm.data.collate_audio import audio_present
from fedmllm.data.schema import Sample
from fedmllm.data.synthaudio.clips import PITCHES, SoundScene, audio_words, draw_scene, synthesize
from fedmllm.methods.multimodal_module import MultimodalLoRAMethod
from fedmllm.models import build_tiny_vlm
from fedmllm.models.audio_llava import AudioLlavaForConditionalGeneration
from fedmllm.models.audio_settings import TinyAudioConfig
from fedmllm.models.pretrain import PretrainConfig, pretrain

SR = 8000
AUDIO = TinyAudioConfig(hidden=32, layers=1, heads=2, intermediate=64)
WORDS = ["is", "there", "a", "lesion", "yes", "no", *audio_words()]


def _tone(freq: float, seconds: float = 1.0, rate: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _slaney_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale written out (linear below 1 kHz, logarithmic above)."""
    f = np.asarray(f, dtype=float)
    lin = 3.0 * f / 200.0
    log = 15.0 + 27.0 * np.log(np.maximum(f, 1e-9) / 1000.0) / np.log(6.4)
    return np.where(f < 1000.0, lin, log)


@pytest.mark.parametrize("freq", [300.0, 800.0, 2000.0, 3000.0])
def test_a_tone_lands_in_the_mel_band_centred_nearest_its_frequency(freq):
    feats = AudioFeatures()
    mel = feats.log_mel(_tone(freq))
    assert mel.shape == (feats.mel_bins, feats.num_frames) == (16, 32)
    # Band centres from the Slaney formula (independent of transformers' filter bank):
    # mel_bins + 2 points evenly spaced in mel between min_hz and the Nyquist frequency.
    edges = np.linspace(_slaney_mel(50.0), _slaney_mel(SR / 2), feats.mel_bins + 2)
    centre_of_tone = _slaney_mel(freq)
    expected = int(np.argmin(np.abs(edges[1:-1] - centre_of_tone)))
    assert int(mel.mean(dim=1).argmax()) == expected


def test_silence_is_flat_and_a_clip_is_cut_or_padded_to_its_length():
    feats = AudioFeatures()
    silent = feats.log_mel(np.zeros(100, dtype=np.float32))
    assert torch.allclose(silent, torch.full_like(silent, (-10.0 + 4.0) / 4.0))
    assert feats.waveform(np.ones(20000, dtype=np.float32)).shape == (8000,)
    with pytest.raises(ValueError, match="mono 1-D"):
        feats.waveform(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(ValueError, match="even number"):
        AudioFeatures(hop_length=270)


def test_wav_and_flac_read_through_soundfile_resampled_and_mixed_to_mono(tmp_path):
    import soundfile

    t = np.arange(16000) / 16000.0
    left = 0.4 * np.sin(2 * np.pi * 440 * t)
    right = 0.2 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(tmp_path / "a.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "a.flac", left, 16000)
    feats = AudioFeatures()
    wav = feats.waveform(tmp_path / "a.wav")
    t8 = np.arange(8000) / 8000.0
    expected = 0.3 * np.sin(2 * np.pi * 440 * t8)  # mono = mean of channels, at 8 kHz
    assert np.allclose(wav, expected, atol=2e-3)
    flac = feats.waveform(tmp_path / "a.flac")
    assert np.allclose(flac, 0.4 * np.sin(2 * np.pi * 440 * t8), atol=2e-3)  # 16-bit FLAC
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        feats.waveform(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not a sound")
    with pytest.raises(ValueError, match="bad.wav"):
        feats.waveform(tmp_path / "bad.wav")


def _segments(wave: np.ndarray, rate: int = SR) -> list[tuple[int, int]]:
    """Runs of 5-ms frames whose RMS exceeds a threshold (tones; noise stays below)."""
    hop = rate // 200
    rms = np.sqrt([np.mean(wave[i : i + hop] ** 2) for i in range(0, len(wave) - hop, hop)])
    on = rms > 0.12
    runs, start = [], None
    for i, v in enumerate(on):
        if v and start is None:
            start = i
        if not v and start is not None:
            runs.append((start * hop, i * hop))
            start = None
    if start is not None:
        runs.append((start * hop, len(on) * hop))
    return runs


@pytest.mark.parametrize("index", range(12))
def test_every_answer_is_in_the_sound(index):
    rng = np.random.default_rng([7, index])
    scene = draw_scene(rng)
    wave = synthesize(scene, rng)
    runs = _segments(wave)
    assert len(runs) == len(scene.pitches)  # tone count
    for (a, b), name in zip(runs, scene.pitches, strict=True):
        spectrum = np.abs(np.fft.rfft(wave[a:b] * np.hanning(b - a), n=1 << 15))
        peak = np.argmax(spectrum) * SR / (1 << 15)
        assert abs(peak - PITCHES[name]) < 0.04 * PITCHES[name]  # detuned by at most 3 %
    seconds = np.mean([(b - a) / SR for a, b in runs])
    assert (seconds < 0.13) == scene.fast  # 80 ms vs 180 ms tones
    gaps = np.concatenate([wave[: runs[0][0] - 80], wave[runs[-1][1] + 80 :]])
    assert (np.std(gaps) > 0.04) == scene.noisy  # noise floor 0.08 vs silence


def test_scene_answers():
    s = SoundScene(("low", "medium", "high"), fast=True, noisy=False)
    assert [s.answer(k) for k in ("count", "first", "last", "rising", "fast", "noise")] == [
        "three", "low", "high", "yes", "yes", "no",
    ]  # fmt: skip
    assert SoundScene(("high",), False, True).answer("rising") == "no"


# ------------------------------------------------------------------ the model that hears
def _pitch_samples(n: int, seed: int) -> list[Sample]:
    """'first tone' questions: three balanced answers, recoverable only from the sound."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = draw_scene(rng)
        wave = synthesize(scene, rng)
        q = "what is the pitch of the first tone?"
        out.append(Sample(None, "audio", q, scene.pitches[0], "vqa", "open", audio=wave))
    return out


def _engine(tmp_path, public: list[Sample]):
    torch.manual_seed(0)
    return build_tiny_vlm(tmp_path, public, WORDS, config=TINY, pretrain={"steps": 0}, audio=AUDIO)


def _accuracy(engine, samples: list[Sample]) -> float:
    hits = 0
    for k in range(0, len(samples), 20):
        chunk = samples[k : k + 20]
        answers = engine.generate(engine.gen_collator(chunk), max_new_tokens=2)
        hits += sum(a == s.answer for a, s in zip(answers, chunk, strict=True))
    return hits / len(samples)


def test_a_model_that_cannot_hear_scores_the_trivial_baseline_and_a_trained_one_beats_it(
    tmp_path,
):
    train, test = _pitch_samples(600, seed=1), _pitch_samples(90, seed=2)
    engine = _engine(tmp_path, train)
    model = engine.model
    assert isinstance(model, AudioLlavaForConditionalGeneration)
    for p in model.parameters():
        p.requires_grad_(True)
    tower_before = {k: v.clone() for k, v in model.audio_tower.state_dict().items()}
    cfg = PretrainConfig(steps=300, batch_size=16, lr=2e-3, warmup=20, seed=0)
    pretrain(model, engine.collator, train, cfg, progress=False)
    # The audio tower received gradients from the sound and moved.
    moved = [
        k for k, v in model.audio_tower.state_dict().items() if not torch.equal(v, tower_before[k])
    ]
    assert any("layers.0.self_attn" in k for k in moved) and any("conv1" in k for k in moved)
    trivial = max(Counter(s.answer for s in test).values()) / len(test)  # majority answer
    silence = np.zeros(8000, np.float32)
    deaf = [Sample(None, "audio", s.question, s.answer, "vqa", "open", audio=silence) for s in test]
    hearing, not_hearing = _accuracy(engine, test), _accuracy(engine, deaf)
    assert not_hearing <= trivial + 0.05, (not_hearing, trivial)
    assert hearing >= trivial + 0.3, (hearing, trivial)


def test_the_answer_changes_with_the_audio_and_generation_uses_it(tmp_path):
    engine = _engine(tmp_path, _pitch_samples(4, 0))
    randomise(engine.model.audio_projector, "", seed=3)  # make the sound matter at init
    a, b = _pitch_samples(2, 5)
    batch = engine.collator([a, b])
    n = AUDIO.features().num_tokens
    assert (batch["input_ids"] == engine.model.config.audio_token_index).sum(dim=1).tolist() == [
        n,
        n,
    ]
    assert batch["input_features"].shape == (2, 16, 32)
    with torch.no_grad():
        out1 = engine.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        batch2 = dict(batch, input_features=batch["input_features"].flip(0))
        out2 = engine.model(**{k: v for k, v in batch2.items() if k != "labels"}).logits
    assert not torch.allclose(out1, out2)
    gen = engine.gen_collator([a, a])
    gen["input_features"] = torch.stack([gen["input_features"][0], torch.zeros(16, 32) - 1.5])
    with torch.no_grad():
        logits = engine.model(**{k: v for k, v in gen.items() if k != "samples"}).logits
    assert not torch.allclose(logits[0, -1], logits[1, -1])  # same prompt, other sound


def test_a_batch_cannot_mix_samples_with_and_without_audio():
    a = _pitch_samples(1, 0)[0]
    b = Sample(None, "text", "is there a lesion?", "no", "vqa", "closed")
    assert audio_present([a]) and not audio_present([b])
    with pytest.raises(ValueError, match="mixes 1 samples with audio"):
        audio_present([a, b])


def test_the_hearing_model_round_trips_through_save_and_load(tmp_path):
    engine = _engine(tmp_path, _pitch_samples(4, 0))
    engine.model.save_pretrained(tmp_path / "m")
    again = AudioLlavaForConditionalGeneration.from_pretrained(tmp_path / "m")
    for (k, v), (k2, v2) in zip(
        engine.model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(v, v2)


# ------------------------------------------------------------------ groups and schedule
ENC = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def _method(tmp_path, schedule: dict | None) -> MultimodalLoRAMethod:
    public = _pitch_samples(4, 0) + make_samples("ct", 4)
    method = MultimodalLoRAMethod(
        _engine(tmp_path, public),
        target_modules=["q_proj", "v_proj"],
        r=2,
        alpha=4,
        dropout=0.0,
        encoder_target_modules=ENC,
        encoder_module_filter="vision_tower|audio_tower",
        projector_modules=["linear_1", "linear_2"],
        projector_module_filter="multi_modal_projector|audio_projector",
        group_patterns={
            "encoder": "vision_tower|audio_tower",
            "projector": "multi_modal_projector|audio_projector",
        },
        stage_schedule=schedule,
    )
    randomise(method.model, "lora_B", seed=2, scale=0.05)
    return method


def _update(method, samples: list[Sample], steps: int) -> tuple[dict, dict]:
    before = method.adapter_state()
    batches = iter([method.engine.collator(samples[2 * i : 2 * i + 2]) for i in range(steps)])
    method.local_update(
        cpu_fabric(), batches, steps, method.configure_optimizers(), lambda _s: 0.01
    )
    return before, method.adapter_state()


def _moved_sides(method, before: dict, after: dict) -> set[str]:
    """``side/group`` of every tensor that changed."""
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    return {f"{method.patterns.side_of(k)}/{method.group_of(k)}" for k in changed}


@pytest.mark.parametrize(("rounds", "stage_one_rounds"), [(4, 2), (5, 3), (2, 1)])
def test_by_round_switches_at_half_the_rounds_on_the_audio_side(tmp_path, rounds, stage_one_rounds):
    """T = 0.5 x rounds: rounds t < T train audio tower LoRA + audio projector, later ones the
    LLM LoRA (5 rounds: T = 2.5, so rounds 0, 1, 2 are stage I)."""
    method = _method(tmp_path, {"mode": "by_round", "switch_round_frac": 0.5})
    samples = _pitch_samples(4, 3)
    for t in range(rounds):
        method.begin_round(t, rounds)
        before, after = _update(method, samples, 2)
        moved = _moved_sides(method, before, after)
        if t < stage_one_rounds:
            assert moved == {"audio/encoder", "audio/projector"}, (t, moved)
        else:
            assert moved == {"llm/llm"}, (t, moved)


def test_an_audio_client_sends_the_audio_side_and_never_the_vision_tower(tmp_path):
    method = _method(tmp_path, None)
    before, after = _update(method, _pitch_samples(4, 3), 2)
    assert _moved_sides(method, before, after) == {"audio/encoder", "audio/projector", "llm/llm"}
    sent = method.shared_keys(after)
    sides = {method.patterns.side_of(k) for k in sent}
    assert sides == {"audio", "llm"}
    assert not any("vision_tower" in k or "multi_modal_projector" in k for k in sent)
    method.send_unreached = True  # FedAvg/FedA² over all clients: every key travels
    assert set(method.shared_keys(after)) == set(after)


def test_an_image_batch_moves_the_vision_side_only(tmp_path):
    method = _method(tmp_path, {"mode": "two_stage", "tau": 1.0})
    before, after = _update(method, make_samples("ct", 4), 2)
    assert _moved_sides(method, before, after) == {"image/encoder", "image/projector"}


def test_audio_config_errors_name_the_option():
    with pytest.raises(ValueError, match="model.audio.hidden"):
        TinyAudioConfig(hidden=30, heads=4)
    with pytest.raises(ValueError, match="unknown model.audio keys"):
        TinyAudioConfig.from_dict({"hiden": 3})
    assert math.isclose(TinyAudioConfig().features().num_tokens, 16)


def test_inspect_grid_shows_a_spectrogram_with_low_tones_low_and_high_tones_high():
    from fedmllm.data.inspect import CELL, _thumbnail

    def brightest_row(freq: float) -> int:
        s = Sample(None, "audio", "q?", "a", "vqa", "open", audio=_tone(freq))
        pixels = np.asarray(_thumbnail(s)).astype(float)
        return int(pixels[..., 0].mean(axis=1).argmax())  # red channel = loudness

    assert brightest_row(300.0) > CELL * 0.6  # near the bottom
    assert brightest_row(3000.0) < CELL * 0.3  # near the top
    both = Sample(np.zeros((32, 32, 3), np.uint8), "ct", "q?", "a", "vqa", "open", audio=_tone(800))
    pixels = np.asarray(_thumbnail(both))
    assert not pixels[: CELL // 2].any() and pixels[-CELL // 4 :].any()  # image, strip below
