"""The collator of models that hear: ``VLMCollator`` plus audio tokens and log-mel features.

A sample with ``audio`` gets ``num_audio_tokens`` copies of the audio-token id right after
the bos token (before the template's text and any image tokens), and the batch gets
``input_features`` (``B x mel x frames``). Like images, a batch holds audio for every
sample or for none; image and audio are independent (a sample may carry both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedmllm.data.audio import AudioFeatures
from fedmllm.data.collate import VLMCollator
from fedmllm.data.schema import Sample

AUDIO_TOKEN = "<audio>"


def audio_present(samples: Sequence[Sample]) -> bool:
    """Whether the batch has audio; raises when it mixes samples with and without."""
    flags = [getattr(s, "audio", None) is not None for s in samples]
    if any(flags) and not all(flags):
        raise ValueError(
            f"batch mixes {sum(flags)} samples with audio and {len(flags) - sum(flags)} without; "
            "batch them separately (a client holds audio for all its samples or for none)"
        )
    return bool(flags) and flags[0]


class AudioVLMCollator(VLMCollator):
    """``VLMCollator`` that also places audio tokens and computes ``input_features``.

    Args:
        *args: ``VLMCollator``'s.
        features: The log-mel extractor (its ``num_tokens`` audio tokens per clip).
        audio_token: The tokeniser's audio placeholder.
        **kwargs: ``VLMCollator``'s.
    """

    def __init__(
        self,
        *args: Any,
        features: AudioFeatures,
        audio_token: str = AUDIO_TOKEN,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.features = features
        self.audio_token_id = self.tokenizer.convert_tokens_to_ids(audio_token)
        if self.audio_token_id is None or self.audio_token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no id for audio token {audio_token!r}")
        self._has_audio = False

    def _expand(self, ids: list[int], has_image: bool, index: int) -> list[int]:
        ids = super()._expand(ids, has_image, index)
        if not self._has_audio:
            return ids
        return ids[:1] + [self.audio_token_id] * self.features.num_tokens + ids[1:]

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """``VLMCollator``'s batch plus ``input_features`` when the samples carry audio."""
        if not samples:
            raise ValueError("cannot collate an empty batch")
        self._has_audio = audio_present(samples)
        try:
            batch = super().__call__(samples)
        finally:
            has_audio, self._has_audio = self._has_audio, False
        if has_audio:
            batch["input_features"] = self.features.batch([s.audio for s in samples])
        return batch
