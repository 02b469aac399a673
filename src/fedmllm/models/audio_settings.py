"""The tiny model's audio settings (feature extraction and the Whisper-style tower's sizes).

Kept apart from :mod:`fedmllm.models.audio_llava` so reading a config never imports the model
classes (which need ``transformers`` 5's strict configs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from transformers import WhisperConfig

from fedmllm.data.audio import AudioFeatures
from fedmllm.models.settings import Settings


@dataclass(frozen=True)
class TinyAudioConfig(Settings):
    """The tiny model's audio side: feature extraction and the Whisper-style tower.

    Attributes:
        sample_rate: Waveform samples per second.
        clip_seconds: Clip length (cut or zero-padded).
        n_fft: STFT window.
        hop_length: STFT hop; ``clip / hop`` frames, half as many audio tokens.
        mel_bins: Mel filters (the tower's input channels).
        hidden: Tower width (Whisper ``d_model``).
        layers: Tower transformer layers.
        heads: Tower attention heads.
        intermediate: Tower MLP width.
    """

    sample_rate: int = 8000
    clip_seconds: float = 1.0
    n_fft: int = 256
    hop_length: int = 250
    mel_bins: int = 16
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    intermediate: int = 128

    section: ClassVar[str] = "model.audio"

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(
                f"model.audio.hidden={self.hidden} is not a multiple of model.audio.heads"
            )
        self.features()  # validates the frame count

    def features(self) -> AudioFeatures:
        """The collator's log-mel extractor for these settings."""
        return AudioFeatures(
            sample_rate=self.sample_rate,
            clip_seconds=self.clip_seconds,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            mel_bins=self.mel_bins,
        )

    def whisper_config(self) -> WhisperConfig:
        """A ``WhisperConfig`` whose encoder is this tower (its decoder is never built)."""
        return WhisperConfig(
            vocab_size=8,
            num_mel_bins=self.mel_bins,
            d_model=self.hidden,
            encoder_layers=self.layers,
            encoder_attention_heads=self.heads,
            encoder_ffn_dim=self.intermediate,
            decoder_layers=1,
            decoder_attention_heads=self.heads,
            decoder_ffn_dim=self.intermediate,
            max_source_positions=self.features().num_tokens,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
