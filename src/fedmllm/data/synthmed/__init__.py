"""``fedmed_synth``: an embedded synthetic analogue of the paper's Fed-Med benchmark.

Three clients (``vqa``: CT + MRI questions, ``report``: chest X-ray reports, ``detection``:
chest CT boxes) plus a disjoint public split over four modalities (CT, MRI, X-ray,
ultrasound) for pretraining the tiny model. See ``docs/data.md``.
"""

from fedmllm.data.synthmed.benchmark import (
    CLIENTS,
    DEFAULT_TRAIN_SIZES,
    PUBLIC,
    SynthBenchmark,
    load_fedmed_synth,
)
from fedmllm.data.synthmed.phrases import TOKEN_RE, box_from_text, format_box, tokenize
from fedmllm.data.synthmed.scene import Lesion, Scene
from fedmllm.data.synthmed.vocab import vocabulary

__all__ = [
    "CLIENTS",
    "DEFAULT_TRAIN_SIZES",
    "PUBLIC",
    "TOKEN_RE",
    "Lesion",
    "Scene",
    "SynthBenchmark",
    "box_from_text",
    "format_box",
    "load_fedmed_synth",
    "tokenize",
    "vocabulary",
]
