"""fedmllm's Hydra config tree, shipped inside the package, and the one way to compose it.

The YAML groups beside this file (``benchmark/``, ``method/``, ``experiment/``...) are package
data: an editable checkout and an installed wheel find them the same way, by this package,
never by a path guessed from the working directory or the repository layout. A Hydra app
names them ``pkg://fedmllm.configs`` (:data:`SEARCH_PATH`); code without a running app
composes with :func:`compose_train`. Users add their own config directories on top with
Hydra's search path (``hydra.searchpath=[file:///my/configs]``): the packaged configs win on
a name both define, the user's add new ones (an experiment, a benchmark).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

CONFIG_MODULE = __name__
"""The package holding the config tree (``fedmllm.configs``)."""
SEARCH_PATH = f"pkg://{CONFIG_MODULE}"
"""The config tree as a Hydra search-path entry (``hydra.main(config_path=SEARCH_PATH)``)."""
CONFIG_DIR = Path(__file__).resolve().parent
"""The config tree on disk (for reading single YAML files, e.g. in tests)."""
PRIMARY = "train"
"""The primary config every app composes (``train.yaml``)."""
VERSION_BASE = "1.3"

if not OmegaConf.has_resolver("concat"):
    # ${concat:${method.lora_targets},${method.mole_targets}}: lists joined, for baselines
    # that must adapt the same modules as the compared method (experiment/fedmed_mole.yaml).
    # Registered with the configs that use it, so every app that composes them can resolve it.
    OmegaConf.register_new_resolver("concat", lambda *lists: [x for xs in lists for x in xs])


def launch_dir() -> str:
    """The directory the command was started from: Hydra's ``runtime.cwd`` inside a job, the
    working directory before one (a multirun's sweep dir is resolved before any job starts)
    and outside Hydra (``compose_train``). ``paths.root_dir: ${fedmllm.cwd:}``."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.cwd)
    return os.getcwd()


if not OmegaConf.has_resolver("fedmllm.cwd"):
    OmegaConf.register_new_resolver("fedmllm.cwd", launch_dir)


def overridden_keys(overrides: Sequence[str]) -> set[str]:
    """The keys ``overrides`` set (``a.b=1``, ``+a.b=1``, ``~a.b`` all give ``a.b``)."""
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides}


def compose_train(
    overrides: Sequence[str] = (), config_dir: str | Path | None = None
) -> DictConfig:
    """``train.yaml`` composed with ``overrides`` as ``train.py`` would compose it.

    Inside a running Hydra app (``train.py``) the app's own search path is used, so config
    directories the user added are seen; outside one, the packaged tree (or ``config_dir``, a
    whole tree with its own ``train.yaml``, which then replaces it). ``paths.root_dir`` is the
    working directory unless the overrides set it (:func:`launch_dir`).

    Raises:
        FileNotFoundError: ``config_dir`` has no ``train.yaml``.
    """
    overrides = list(overrides)
    if config_dir is not None:
        path = Path(config_dir).expanduser().resolve()
        if not (path / f"{PRIMARY}.yaml").is_file():
            raise FileNotFoundError(f"no {PRIMARY}.yaml in the config directory {path}")
        with initialize_config_dir(config_dir=str(path), version_base=VERSION_BASE):
            cfg = compose(config_name=PRIMARY, overrides=overrides)
    elif GlobalHydra.instance().is_initialized():
        cfg = compose(config_name=PRIMARY, overrides=overrides)
    else:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=VERSION_BASE):
            cfg = compose(config_name=PRIMARY, overrides=overrides)
    return cfg
