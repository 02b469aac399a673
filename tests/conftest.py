"""Shared fixtures: a composed Hydra config for any experiment, caches in one temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from fedmllm.configs import CONFIG_DIR as CONFIGS

EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data/model cache for the whole session: the smoke model is pretrained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(cache_dir: Path, tmp_path: Path):
    """``make_cfg(experiment, *overrides)`` -> a resolved-path config writing under tmp_path."""

    def _make(experiment: str, *overrides: str, smoke: bool = True) -> DictConfig:
        args = [f"experiment={experiment}", *(["debug=smoke"] if smoke else []), *overrides]
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose(config_name="train", overrides=args)
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.data_dir = str(cache_dir)
            cfg.paths.log_dir = str(tmp_path / "logs")
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.logger = None
        return cfg

    return _make


@pytest.fixture(scope="session")
def real_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random LLaVA, Idefics3 and Qwen2-VL checkpoints (tests/real_checkpoints.py)."""
    from real_checkpoints import BUILDERS

    root = tmp_path_factory.mktemp("real_checkpoints")
    return {family: build(root / family) for family, build in BUILDERS.items()}
