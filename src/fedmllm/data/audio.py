"""Audio for the collators: reading WAV/FLAC files, resampling, log-mel features.

A sample's ``audio`` is a mono float waveform (``np.ndarray``, values in [-1, 1], at the
feature extractor's sample rate) or a path to a sound file that ``soundfile`` reads (WAV,
FLAC, OGG). The features are Whisper's recipe at a small size: a Hann-window STFT, a
Slaney mel filter bank, ``log10`` clamped to 8 decades below the clip's maximum, scaled as
``(x + 4) / 4``. Every clip is cut or zero-padded to ``clip_seconds`` first, so a batch has
one shape and the audio tower a fixed number of output tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A mono float32 waveform of a sound file, resampled to ``sample_rate``.

    Multi-channel files are averaged to mono. Resampling is linear interpolation (enough for
    the features here; a real model's own feature extractor would use its own).

    Raises:
        FileNotFoundError: The file does not exist (the message names it).
        ValueError: ``soundfile`` cannot decode it (the message names the file).
    """
    import soundfile

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"audio file {p} does not exist")
    try:
        data, rate = soundfile.read(str(p), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise ValueError(f"audio file {p} cannot be read by soundfile: {err}") from err
    wave = data.mean(axis=1)
    return resample(wave, int(rate), sample_rate)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear-interpolation resampling of a mono waveform (``rate`` -> ``target`` Hz)."""
    if rate == target or len(wave) == 0:
        return wave.astype(np.float32)
    n_out = max(1, round(len(wave) * target / rate))
    t_out = np.arange(n_out) * (rate / target)
    return np.interp(t_out, np.arange(len(wave)), wave).astype(np.float32)


@dataclass(frozen=True)
class AudioFeatures:
    """Log-mel feature extraction at one fixed clip length.

    Attributes:
        sample_rate: Samples per second of the waveforms it takes.
        clip_seconds: Every clip is cut or zero-padded to this length.
        n_fft: STFT window length in samples.
        hop_length: STFT hop in samples.
        mel_bins: Mel filters (the audio tower's ``num_mel_bins``).
        min_hz: Lowest mel filter edge.
    """

    sample_rate: int = 8000
    clip_seconds: float = 1.0
    n_fft: int = 256
    hop_length: int = 250
    mel_bins: int = 16
    min_hz: float = 50.0

    def __post_init__(self) -> None:
        if self.num_frames < 2 or self.num_frames % 2:
            raise ValueError(
                f"audio clip of {self.clip_samples} samples with hop {self.hop_length} gives "
                f"{self.num_frames} frames; the audio tower needs an even number (>= 2): change "
                "model.audio.clip_seconds or model.audio.hop_length"
            )

    @property
    def clip_samples(self) -> int:
        """Waveform length after cutting/padding."""
        return round(self.sample_rate * self.clip_seconds)

    @property
    def num_frames(self) -> int:
        """Spectrogram frames per clip (the Whisper encoder's ``2 x max_source_positions``)."""
        return self.clip_samples // self.hop_length

    @property
    def num_tokens(self) -> int:
        """Audio tokens per clip: the encoder's stride-2 convolution halves the frames."""
        return self.num_frames // 2

    @cached_property
    def _filters(self) -> torch.Tensor:
        from transformers.audio_utils import mel_filter_bank

        bank = mel_filter_bank(
            num_frequency_bins=self.n_fft // 2 + 1,
            num_mel_filters=self.mel_bins,
            min_frequency=self.min_hz,
            max_frequency=self.sample_rate / 2,
            sampling_rate=self.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        return torch.from_numpy(np.asarray(bank, dtype=np.float32))  # (freq, mel)

    def waveform(self, audio: np.ndarray | str | Path) -> np.ndarray:
        """The clip as a float32 array of exactly ``clip_samples`` samples."""
        if isinstance(audio, (str, Path)):
            wave = read_audio(audio, self.sample_rate)
        else:
            wave = np.asarray(audio, dtype=np.float32)
            if wave.ndim != 1:
                raise ValueError(f"an audio array must be a mono 1-D waveform, got {wave.shape}")
        out = np.zeros(self.clip_samples, dtype=np.float32)
        n = min(len(wave), self.clip_samples)
        out[:n] = wave[:n]
        return out

    def log_mel(self, audio: np.ndarray | str | Path) -> torch.Tensor:
        """``mel_bins x num_frames`` log-mel features of one clip."""
        wave = torch.from_numpy(self.waveform(audio))
        spec = torch.stft(
            wave,
            self.n_fft,
            hop_length=self.hop_length,
            window=torch.hann_window(self.n_fft),
            center=True,
            return_complex=True,
        )
        power = spec.abs().pow(2)[:, : self.num_frames]  # (freq, frames)
        mel = (self._filters.T @ power).clamp_min(1e-10).log10()
        mel = torch.maximum(mel, mel.max() - 8.0)
        return (mel + 4.0) / 4.0

    def batch(self, clips: list[np.ndarray | str | Path]) -> torch.Tensor:
        """``B x mel_bins x num_frames`` features of a batch of clips."""
        return torch.stack([self.log_mel(c) for c in clips])


def spectrogram_image(audio: np.ndarray | str | Path, width: int, height: int) -> Any:
    """An RGB PIL picture of a clip's log-mel spectrogram (time left to right, low
    frequencies at the bottom, loud = bright yellow, quiet = dark blue), for inspection grids.

    File clips are read at the default features' rate (8 kHz): enough to see tones and speech.
    """
    from PIL import Image

    mel = AudioFeatures().log_mel(audio).numpy()
    lo, hi = float(mel.min()), float(mel.max())
    level = (mel - lo) / (hi - lo) if hi > lo else np.zeros_like(mel)
    level = level[::-1]  # row 0 = highest band
    rgb = np.stack([level, level**0.5 * 0.9, 0.5 * (1.0 - level)], axis=-1)
    pixels = (rgb * 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB").resize((width, height), Image.Resampling.NEAREST)
