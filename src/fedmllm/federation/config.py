"""What the round loop is given: its knobs and the duck type of a participant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FederationConfig:
    """Knobs of the round loop (Hydra group ``federation/``).

    The defaults are those of ``fedmllm/configs/federation/default.yaml`` (what users see).
    """

    rounds: int = 10
    local_steps: int = 30
    batch_size: int = 8
    clients_per_round: int | float | None = None
    lr: float = 1e-3
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    eval_every: int = 5
    eval_batch_size: int = 50
    max_new_tokens: dict[str, int] = field(
        default_factory=lambda: {"vqa": 6, "report": 64, "detection": 24, "classification": 1}
    )
    metrics: dict[str, list[str]] = field(default_factory=dict)
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    persist_optimizer: bool = True
    checkpoint: bool = True
    store_dir: str | None = None
    drift: bool = True
    drift_pairwise_max: int = 16
    wire_dtype: str = "float32"
    attack: dict[str, Any] = field(default_factory=dict)
    """The run's ``attack/`` config node (``fedmllm.federation.attacks``); empty: none."""
    seed: int = 0
    privacy: Any = None  # a fedmllm.privacy.PrivacyConfig, set by the build from ``privacy``


@dataclass
class Client:
    """A training or evaluation participant: duck-typed on fedmllm's ``ClientData``."""

    client_id: str
    task: str
    train: Sequence[Any]
    test: Sequence[Any]
    val: Sequence[Any] = ()
