"""Synthetic audio: sound scenes whose answers are in the sound, and ``unimodal_mix_synth``."""

from fedmllm.data.synthaudio.clips import SoundScene, draw_scene, synthesize
from fedmllm.data.synthaudio.mix import load_unimodal_mix_synth

__all__ = ["SoundScene", "draw_scene", "load_unimodal_mix_synth", "synthesize"]
