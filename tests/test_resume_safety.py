"""Resume continues the interrupted run and no other: in its own folder, with its own config.

A smoke run of 4 rounds is killed during round 3 (rounds 1-2 checkpointed, as
``Simulator.fit(stop_after=2)`` leaves it). Resumed with another ``federation.rounds`` it is
refused naming the key; resumed with the same config it ends with the tensors, scores and
TensorBoard curves of an uninterrupted run, in the same folder, with one results.json; a
second ``resume=true`` then finds nothing to resume.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fedmllm.build import build_components, make_simulator
from fedmllm.config_check import ConfigError
from fedmllm.configs import CONFIG_DIR
from fedmllm.run_dirs import job_dirname, resume_dir, runs_dir
from fedmllm.run_files import save_run_config
from fedmllm.train import run

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("federation.rounds=4", "federation.eval_every=2", "federation.lr=0.01", "threads=1")


def _cfg(make_cfg, out: Path, *extra: str):
    cfg = make_cfg("fedmed_fedavg", *SETTINGS, *extra)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.logger = OmegaConf.load(CONFIG_DIR / "logger" / "tensorboard.yaml")
    return cfg


def _killed(cfg, stop_after: int) -> Path:
    """A run stopped after ``stop_after`` rounds, as a kill during the next one leaves it."""
    run_dir = Path(cfg.paths.output_dir)
    save_run_config(cfg, run_dir)
    sim, logger = make_simulator(cfg, build_components(cfg), run_dir)
    assert sim.fit(stop_after=stop_after)["interrupted"]
    logger.experiment.flush()  # what train's per-round flush has written by the kill
    return run_dir


def _curve(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_killed_run_resumes_only_with_its_own_config(make_cfg, tmp_path):
    runs = runs_dir(tmp_path / "logs", "smoke")
    _, full = run(_cfg(make_cfg, tmp_path / "full"))
    killed = _killed(_cfg(make_cfg, runs / "killed"), stop_after=2)
    before = (killed / "last.ckpt").stat().st_mtime_ns

    # Another number of rounds changes the learning-rate schedule: refused, the key named.
    with pytest.raises(ConfigError, match=r"federation\.rounds: 4 -> 6.*resume_force=true"):
        run(_cfg(make_cfg, tmp_path / "unused", "federation.rounds=6", "resume=true"))
    assert (killed / "last.ckpt").stat().st_mtime_ns == before  # nothing was touched

    # The same config (the eval cadence may differ): the run continues in its own folder.
    _, resumed = run(_cfg(make_cfg, tmp_path / "unused", "resume=true", "federation.eval_every=3"))
    assert sorted(p.name for p in runs.iterdir()) == ["killed"]
    assert not (tmp_path / "unused").exists()
    results = json.loads((killed / "results.json").read_text())
    assert results["resume"]["round"] == 2 and results["resume"]["changed"] == {}
    assert results["clients"] == full["results"]["clients"]
    assert results["comm"] == full["results"]["comm"]
    a, b = full["simulator"].global_state, resumed["simulator"].global_state
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    train = [h["train"] for h in results["history"] if "train" in h]
    assert train == [h["train"] for h in full["results"]["history"] if "train" in h]
    # One TensorBoard stream: every round once, the values of the uninterrupted run.
    for tag in ("client_vqa/train/loss", "comm/up_bytes"):
        curve = _curve(killed, tag)
        assert [step for step, _ in curve] == [1, 2, 3, 4], tag
        assert curve == _curve(tmp_path / "full", tag), tag

    # Finished: never resumed again.
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run(_cfg(make_cfg, tmp_path / "again", "resume=true"))
    with pytest.raises(FileNotFoundError, match="nothing to resume: the run is finished"):
        resume_dir(str(killed), runs)


def test_resume_true_on_the_command_line_continues_in_the_runs_folder(
    make_cfg, tmp_path, cache_dir
):
    # Hydra picks the run folder (hydra.run.dir) before train.py runs: it must be the old one.
    runs = runs_dir(tmp_path / "logs", "smoke")
    killed = _killed(_cfg(make_cfg, runs / "killed"), stop_after=2)
    command = [sys.executable, str(ROOT / "train.py"), "experiment=fedmed_fedavg", "debug=smoke"]
    command += [*SETTINGS, f"paths.data_dir={cache_dir}", "resume=true"]
    first = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"resuming {killed} from round 2" in first.stdout + first.stderr
    assert sorted(p.name for p in runs.iterdir()) == ["killed"]
    assert json.loads((killed / "results.json").read_text())["resume"]["round"] == 2
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: resume=true: nothing to resume: no unfinished run (a last.ckpt without "
        f"results.json) under {runs}"
    ]
    assert sorted(p.name for p in runs.iterdir()) == ["killed"]  # no empty folder either


def test_resume_force_continues_and_records_the_changes(make_cfg, tmp_path):
    runs = runs_dir(tmp_path / "logs", "smoke")
    killed = _killed(_cfg(make_cfg, runs / "killed"), stop_after=1)
    cfg = _cfg(make_cfg, tmp_path / "x", "federation.rounds=2", "resume=true", "resume_force=true")
    run(cfg)
    results = json.loads((killed / "results.json").read_text())
    assert results["rounds"] == 2
    assert results["resume"]["changed"] == {"federation.rounds": {"checkpoint": 4, "now": 2}}
    assert results["resume"]["forced"] is True


def test_resume_true_takes_the_latest_unfinished_run(tmp_path):
    runs = tmp_path / "runs"
    for name, files in (("a", ["last.ckpt"]), ("b", ["last.ckpt", "results.json"]), ("c", [])):
        (runs / name).mkdir(parents=True)
        for f in files:
            (runs / name / f).write_text("x")
    assert resume_dir(True, runs) == runs / "a"  # b is finished, c has no checkpoint
    assert resume_dir(None, runs) is None
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resume_dir(str(runs / "c"), runs)


def test_multirun_job_folders_name_the_swept_values(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        OmegaConf.to_yaml(
            {"hydra": {"overrides": {"task": ["experiment=a,b", "method.r=4,16", "threads=1"]}}}
        )
    )
    job = ["experiment=fedmed_fedavg", "method.r=16", "seed=0", "threads=1", "debug=smoke"]
    assert job_dirname("fedavg", 0, job, str(tmp_path), 3) == "fedmed_fedavg_r16_seed0"
    (tmp_path / "fedmed_fedavg_r16_seed0").mkdir()  # a job whose values read alike
    assert job_dirname("fedavg", 0, job, str(tmp_path), 3) == "fedmed_fedavg_r16_seed0_3"
    # The Optuna sweeper's params are swept too; no experiment override: the method's name.
    lr = ["federation.lr=0.0012345678", "seed=1"]
    assert job_dirname("fedavg", 1, lr, str(tmp_path / "none"), 0, {"federation.lr": "x"}) == (
        "fedavg_lr0.001235_seed1"
    )
