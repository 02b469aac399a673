"""Synthetic sound scenes and the spoken-free audio questions read off them.

A scene is one to four tones in a row. Each tone has one of three pitches (low 300 Hz,
medium 800 Hz, high 2000 Hz, each detuned by up to 3 %); the rhythm is fast (80 ms tones) or
slow (180 ms tones), and white noise may lie under the whole clip. Every answer is a
property of the scene the clip was synthesised from, so it can be recovered from the sound:
the pitches lie in different mel bands, tone count and rhythm in the time axis, noise in the
floor between tones. Each question type has a trivial baseline (its most frequent answer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PITCHES = {"low": 300.0, "medium": 800.0, "high": 2000.0}
PITCH_NAMES = tuple(PITCHES)
COUNT_WORDS = ("one", "two", "three", "four")
TONE_SECONDS = {True: 0.08, False: 0.18}  # fast / slow rhythm
GAP_SECONDS = 0.04
RAMP_SECONDS = 0.01
NOISE_LEVEL = 0.08

# question type -> (wording, answer type)
QUESTIONS = {
    "count": ("how many tones does the sound have?", "open"),
    "first": ("what is the pitch of the first tone?", "open"),
    "last": ("what is the pitch of the last tone?", "open"),
    "rising": ("does the pitch rise from the first tone to the last?", "closed"),
    "fast": ("is the rhythm of the tones fast?", "closed"),
    "noise": ("is there background noise in the sound?", "closed"),
}
QUESTION_TYPES = tuple(QUESTIONS)


@dataclass(frozen=True)
class SoundScene:
    """What a clip holds: tone pitches in order, the rhythm, the noise."""

    pitches: tuple[str, ...]
    fast: bool
    noisy: bool

    def answer(self, kind: str) -> str:
        """The answer to question type ``kind`` about this scene."""
        if kind == "count":
            return COUNT_WORDS[len(self.pitches) - 1]
        if kind == "first":
            return self.pitches[0]
        if kind == "last":
            return self.pitches[-1]
        if kind == "rising":
            rank = PITCH_NAMES.index
            return "yes" if rank(self.pitches[-1]) > rank(self.pitches[0]) else "no"
        if kind == "fast":
            return "yes" if self.fast else "no"
        if kind == "noise":
            return "yes" if self.noisy else "no"
        raise ValueError(f"unknown audio question type {kind!r}; use one of {QUESTION_TYPES}")

    def to_dict(self) -> dict[str, object]:
        """JSON form (sample meta)."""
        return {"pitches": list(self.pitches), "fast": self.fast, "noisy": self.noisy}


def draw_scene(rng: np.random.Generator) -> SoundScene:
    """A random scene: 1-4 tones, uniform pitches, fast or slow, noisy or clean."""
    n = int(rng.integers(1, 5))
    pitches = tuple(PITCH_NAMES[int(i)] for i in rng.integers(0, 3, size=n))
    return SoundScene(pitches, bool(rng.random() < 0.5), bool(rng.random() < 0.5))


def synthesize(
    scene: SoundScene, rng: np.random.Generator, sample_rate: int = 8000, seconds: float = 1.0
) -> np.ndarray:
    """The clip of ``scene``: float32 mono, ``seconds`` long, peak below 1."""
    total = round(sample_rate * seconds)
    wave = np.zeros(total, dtype=np.float64)
    tone = round(TONE_SECONDS[scene.fast] * sample_rate)
    gap = round(GAP_SECONDS * sample_rate)
    ramp = max(1, round(RAMP_SECONDS * sample_rate))
    envelope = np.ones(tone)
    envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
    envelope[-ramp:] = np.linspace(1.0, 0.0, ramp)
    t = np.arange(tone) / sample_rate
    start = gap + int(rng.integers(0, gap + 1))
    for name in scene.pitches:
        freq = PITCHES[name] * (1.0 + rng.uniform(-0.03, 0.03))
        amp = rng.uniform(0.3, 0.6)
        end = min(total, start + tone)
        phase = rng.uniform(0, 2 * np.pi)
        wave[start:end] += (
            amp * envelope[: end - start] * np.sin(2 * np.pi * freq * t[: end - start] + phase)
        )
        start = end + gap
    if scene.noisy:
        wave += NOISE_LEVEL * rng.standard_normal(total)
    return np.clip(wave, -0.99, 0.99).astype(np.float32)


def audio_question(rng: np.random.Generator, scene: SoundScene) -> tuple[str, str, str, str]:
    """A uniformly drawn question type: ``(kind, question, answer, answer_type)``."""
    kind = QUESTION_TYPES[int(rng.integers(len(QUESTION_TYPES)))]
    text, answer_type = QUESTIONS[kind]
    return kind, text, scene.answer(kind), answer_type


def audio_words() -> list[str]:
    """Every word of the audio questions and answers (added to the benchmark vocabulary)."""
    words: set[str] = {"yes", "no", *PITCH_NAMES, *COUNT_WORDS}
    for text, _ in QUESTIONS.values():
        words.update(text.replace("?", " ?").split())
    return sorted(words)
