"""``python -m fedmllm.deploy.flower [flower.KEY=VALUE ...] [Hydra overrides ...]``.

Runs the federation ``train.py`` would run with the same overrides, on Flower's simulation
engine: e.g. ``python -m fedmllm.deploy.flower experiment=fedmed_fedavg debug=smoke``.

``flower.*`` arguments are Flower's, not Hydra's: ``flower.num_supernodes``,
``flower.num_cpus``, ``flower.client_cpus`` and the deployment options ``flower.min_replies``,
``flower.round_timeout``, ``flower.min_nodes``, ``flower.node_wait``, ``flower.eval_timeout``,
``flower.config_dir``, ``flower.resume_from`` (a Flower run directory to continue).
``python -m fedmllm.deploy.flower app-dir`` prints the directory of the Flower app for
``flwr run``.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from fedmllm.deploy.flower.config import CONFIG_DIR_KEY, OVERRIDES_KEY, FlowerOptions
from fedmllm.deploy.flower.resume import RESUME_KEY

log = logging.getLogger("fedmllm")

APP_DIR = Path(__file__).resolve().parent / "app"
_ENGINE_KEYS = ("num_supernodes", "num_cpus", "client_cpus")
_PATH_KEYS = {"config_dir": CONFIG_DIR_KEY, "resume_from": RESUME_KEY}


def parse_args(argv: list[str]) -> tuple[dict[str, object], dict[str, int]]:
    """Split ``argv`` into a run config (Hydra overrides + options) and engine settings."""
    overrides, options, engine = [], {}, {}
    known = {f.replace("-", "_") for f in FlowerOptions().as_run_config()}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not key.startswith("flower."):
            overrides.append(arg)
            continue
        name = key.removeprefix("flower.")
        if not sep:
            raise ValueError(f"{arg!r}: expected flower.KEY=VALUE")
        if name in _ENGINE_KEYS:
            engine[name] = int(value)
        elif name in known:
            options[name.replace("_", "-")] = float(value)
        elif name in _PATH_KEYS:
            options[_PATH_KEYS[name]] = value
        else:
            raise ValueError(
                f"unknown option {key!r}; Flower options are "
                f"{sorted(f'flower.{k}' for k in (*known, *_ENGINE_KEYS, *_PATH_KEYS))}"
            )
    run_config = {OVERRIDES_KEY: shlex.join(overrides), **options}
    FlowerOptions.from_config(run_config)  # fail on bad values before Ray starts
    return run_config, engine


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
    )
    for handler in logging.getLogger().handlers:  # Flower lowers its logger to DEBUG
        handler.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args[:1] == ["app-dir"]:
        print(APP_DIR)
        return 0
    try:
        run_config, engine = parse_args(args)
        from fedmllm.deploy.flower.simulation import run_simulation

        run_simulation(run_config, **engine)
    except (ValueError, KeyError, FileNotFoundError) as e:
        log.error("error: %s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
