"""``fedvqa_synth``: an embedded synthetic analogue of the Fed-VQA benchmark (FedDAT, Fed-MoLE).

Five clients, one per visual style of rendered everyday scenes (``aqua``: paintings, ``gqa``:
photos, ``vizwiz``: degraded photos, ``abstract``: cartoons, ``cocoqa``: object-centric photos),
five question types with single-word answers, plus a public split over all styles for
pretraining the tiny model. See ``docs/data.md``.
"""

from fedmllm.data.synthvqa.benchmark import (
    CLIENT_IDS,
    CLIENTS,
    DEFAULT_TRAIN_SIZES,
    PUBLIC,
    FedVqaSynth,
    load_fedvqa_synth,
)
from fedmllm.data.synthvqa.questions import QTYPES, vocabulary
from fedmllm.data.synthvqa.render import STYLES
from fedmllm.data.synthvqa.scene import CATEGORIES, COLORS, Scene, Thing

__all__ = [
    "CATEGORIES",
    "CLIENTS",
    "CLIENT_IDS",
    "COLORS",
    "DEFAULT_TRAIN_SIZES",
    "PUBLIC",
    "QTYPES",
    "STYLES",
    "FedVqaSynth",
    "Scene",
    "Thing",
    "load_fedvqa_synth",
    "vocabulary",
]
