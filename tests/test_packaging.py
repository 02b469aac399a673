"""fedmllm as users install it: the configs travel inside the package, a wheel runs anywhere.

The packaged config tree (``fedmllm.configs``) is the only one: these tests build a wheel,
install it into a temp dir and run the package's entry points from a working directory
outside the checkout, with the user's own config directory on Hydra's search path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from fedmllm.configs import CONFIG_DIR, compose_train
from fedmllm.federation.config import FederationConfig

ROOT = Path(__file__).resolve().parents[1]

# A user's experiment, kept outside the package: the packaged groups with one change.
USER_EXPERIMENT = """# @package _global_
defaults:
  - override /benchmark: fedmed_synth
  - override /method: standalone
  - override /aggregator: none
task_name: user_standalone
seed: 7
"""


def _user_configs(root: Path) -> Path:
    (root / "experiment").mkdir(parents=True)
    (root / "experiment" / "user_standalone.yaml").write_text(USER_EXPERIMENT)
    # Same name as a packaged experiment: the packaged one must win (Hydra's search order).
    (root / "experiment" / "fedmed_fedavg.yaml").write_text("# @package _global_\nseed: 99\n")
    return root


def test_federation_config_defaults_are_the_yaml_defaults() -> None:
    yaml = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "federation" / "default.yaml"))
    defaults = FederationConfig()
    # metrics / metric_options: the YAML lists every task and option as null ("not chosen"),
    # the dataclass leaves them out; every other knob must be the same value.
    for f in dataclasses.fields(FederationConfig):
        if f.name in yaml and f.name not in ("metrics", "metric_options"):
            assert getattr(defaults, f.name) == yaml[f.name], f.name
    assert (defaults.local_steps, defaults.lr) == (30, 1e-3)


def test_user_config_dirs_add_configs_without_replacing_packaged_ones(tmp_path: Path) -> None:
    user = _user_configs(tmp_path / "mine")
    searchpath = f"hydra.searchpath=[file://{user}]"
    cfg = compose_train(["experiment=user_standalone", searchpath])
    assert (cfg.method.name, cfg.seed, cfg.task_name) == ("standalone", 7, "user_standalone")
    clash = compose_train(["experiment=fedmed_fedavg", searchpath])
    assert (clash.task_name, clash.seed) == ("fedmed_fedavg", 0)
    assert compose_train([]).paths.root_dir == os.getcwd()  # no Hydra run: the working dir


def _written_since(root: Path, t0: float) -> list[Path]:
    """Files under ``root`` modified since ``t0`` (caches of Python and pytest aside)."""
    skip = {".git", "__pycache__", ".pytest_cache", ".ruff_cache"}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            path = Path(dirpath) / name
            if path.stat().st_mtime >= t0:
                found.append(path)
    return found


def _wheel_site(tmp: Path) -> Path:
    """Build fedmllm's wheel from a copy of the checkout and install it into ``tmp/site``."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "wheel"), str(source)],
        check=True,
        cwd=tmp,
    )
    (wheel,) = (tmp / "wheel").glob("fedmllm-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)],
        check=True,
        cwd=tmp,
    )
    return tmp / "site"


def test_installed_wheel_runs_outside_the_checkout(tmp_path: Path) -> None:
    # Prepare: the wheel in a site dir that wins over the editable install
    t0 = time.time()
    site = _wheel_site(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    user = _user_configs(tmp_path / "user_configs")
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    # Execute and assert: the installed package, its configs, its entry points
    where = python("-c", "import fedmllm.configs as c; print(c.__file__)").stdout.strip()
    assert Path(where).is_relative_to(site), where
    grid = work / "grid.png"
    shown = python(
        "-m",
        "fedmllm.data.inspect",
        "benchmark=fedvqa_synth",
        "benchmark.public_size=12",
        "benchmark.train_sizes={vqa:6}",
        f"inspect.out={grid}",
    ).stdout
    assert "fedvqa_synth" in shown and grid.is_file()
    assert (work / "data").is_dir()  # paths.root_dir is the working dir, as in a Hydra run
    for experiment, method in (("fedmed_fedavg", "fedavg"), ("user_standalone", "standalone")):
        run_dir = work / experiment
        python(
            "-m",
            "fedmllm.train",
            f"experiment={experiment}",
            "debug=smoke",
            "threads=1",
            "logger=none",
            f"paths.root_dir={work}",
            f"hydra.run.dir={run_dir}",
            f"hydra.searchpath=[file://{user}]",
        )
        results = json.loads((run_dir / "results.json").read_text())
        assert results["method"] == method
        assert results["seed"] == (7 if experiment == "user_standalone" else 0)
    assert _written_since(ROOT, t0) == []
