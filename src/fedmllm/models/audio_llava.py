"""A LLaVA with a second encoder: a Whisper-style audio tower and its own projector.

The model is the real ``LlavaForConditionalGeneration`` (CLIP tower, projector, LLaMA) plus
``audio_tower`` (a ``transformers`` ``WhisperEncoder``: two strided convolutions over a
log-mel spectrogram, then transformer layers) and ``audio_projector`` (``linear_1``, GELU,
``linear_2``, as LLaVA's ``multi_modal_projector``). A prompt carries ``audio_seq_length``
copies of the audio token; the forward pass replaces their embeddings with the projected
audio features, exactly as LLaVA does for image tokens. The module names
(``audio_tower.layers.<i>.self_attn.q_proj``, ``audio_projector.linear_1``) are what the
multimodal method's group patterns and the encoder LoRA look for (docs/modality.md).
"""

from __future__ import annotations

from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import LlavaConfig, LlavaForConditionalGeneration, WhisperConfig
from transformers.activations import ACT2FN
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.models.auto.configuration_auto import AutoConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from fedmllm.models.audio_settings import TinyAudioConfig


@strict
class AudioLlavaConfig(LlavaConfig):
    """``LlavaConfig`` plus ``audio_config`` (a ``WhisperConfig``), the audio token id and the
    number of audio tokens per clip (the encoder's output length)."""

    model_type = "audio_llava"
    sub_configs_defaults = {
        **LlavaConfig.sub_configs_defaults,
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="whisper"),
    }
    audio_config: dict | PreTrainedConfig | None = None
    audio_token_index: int = 5
    audio_seq_length: int = 16


class AudioProjector(nn.Module):
    """Audio features (Whisper ``d_model``) to LLM embeddings: linear, activation, linear."""

    def __init__(self, audio_hidden: int, text_hidden: int, act: str) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(audio_hidden, text_hidden)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(text_hidden, text_hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, d_audio)`` -> ``(B, T, d_text)``."""
        return self.linear_2(self.act(self.linear_1(features)))


class AudioLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    """LLaVA that also hears: ``input_features`` (log-mel, ``B x mel x frames``) fill the
    audio-token positions of ``input_ids``."""

    config_class = AudioLlavaConfig

    def __init__(self, config: AudioLlavaConfig) -> None:
        super().__init__(config)
        audio = config.audio_config
        if not isinstance(audio, WhisperConfig):
            audio = WhisperConfig(**dict(audio or {}))
        self.audio_tower = WhisperEncoder(audio)
        self.audio_projector = AudioProjector(
            audio.d_model, config.text_config.hidden_size, config.projector_hidden_act
        )
        self.post_init()

    def audio_embeddings(self, input_features: torch.Tensor) -> torch.Tensor:
        """Projected audio features, ``(B, audio_seq_length, d_text)``."""
        hidden = self.audio_tower(input_features).last_hidden_state
        return self.audio_projector(hidden)

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """LLaVA's forward; audio tokens in ``input_ids`` take the audio features.

        During cached generation only the first call sees the prompt's audio tokens; later
        calls (one new token each) skip the audio tower.
        """
        if input_features is not None and input_ids is not None:
            mask = input_ids == self.config.audio_token_index
            if bool(mask.any()):
                embeds = self.get_input_embeddings()(input_ids)
                audio = self.audio_embeddings(input_features.to(embeds.dtype))
                if int(mask.sum()) != audio.shape[0] * audio.shape[1]:
                    raise ValueError(
                        f"{int(mask.sum())} audio tokens in the prompt, but the audio tower "
                        f"gives {audio.shape[0]} x {audio.shape[1]} features"
                    )
                inputs_embeds = embeds.masked_scatter(mask.unsqueeze(-1), audio)
                input_ids = None
        return super().forward(
            input_ids=input_ids, pixel_values=pixel_values, inputs_embeds=inputs_embeds, **kwargs
        )


def audio_llava_config(base: LlavaConfig, audio: TinyAudioConfig, audio_token_id: int) -> Any:
    """``base`` (a tiny ``LlavaConfig``) extended with the audio tower of ``audio``."""
    values = base.to_dict()
    for key in ("model_type", "transformers_version", "architectures"):
        values.pop(key, None)
    return AudioLlavaConfig(
        **values,
        audio_config=audio.whisper_config(),
        audio_token_index=audio_token_id,
        audio_seq_length=audio.features().num_tokens,
    )
