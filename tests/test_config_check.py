"""Nonsense settings are refused before anything is built, each in one line that names the
option as typed on the command line and what it may be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import fedmllm.build as build
from fedmllm.config_check import ConfigError, Range, validate_config
from fedmllm.configs import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]

# (experiment, overrides, what the one line must say). The first ten are the issue's.
BAD = [
    ("fedmed_fedavg", ["federation.rounds=-1"], ["federation.rounds=-1", "integer >= 1"]),
    ("fedmed_fedavg", ["federation.rounds=0"], ["federation.rounds=0", "integer >= 1"]),
    ("fedmed_fedavg", ["federation.local_steps=-5"], ["federation.local_steps=-5", ">= 1"]),
    ("fedmed_fedavg", ["federation.lr=-1"], ["federation.lr=-1", "number > 0"]),
    ("fedmed_fedavg", ["federation.clients_per_round=1.5"], ["clients_per_round=1.5", "(0, 1]"]),
    ("fedmed_fedavg", ["federation.batch_size=0"], ["federation.batch_size=0", ">= 1"]),
    (
        "fedmed_fedavg",
        ["+method.lora_targets=[q]"],
        ["fedavg", "did you mean method.target_modules"],
    ),
    ("fedmed_fedavg", ["method.dropout=1.0"], ["method.dropout=1.0", "[0, 1)"]),
    ("fedmed_fedavg", ["method.r=0"], ["method.r=0", "integer >= 1"]),
    (
        "fedmed_mole",
        ["method.num_experts=2", "method.top_k=3"],
        ["top_k=3: must be <= method.num_experts=2"],
    ),
    ("fedmed_fedavg", ["method.grad_accum=0"], ["method.grad_accum=0", ">= 1"]),
    ("fedmed_fedprox", ["method.proximal_mu=-0.1"], ["method.proximal_mu=-0.1", ">= 0"]),
    ("fedmed_fedavg", ["federation.rounds=abc"], ["federation.rounds=abc", "an integer"]),
    ("fedmed_fedavg", ["federation.rounds=2.5"], ["federation.rounds=2.5", "an integer"]),
    ("fedmed_fedavg", ["federation.clients_per_round=0"], ["clients_per_round=0", "(0, 1]"]),
    ("fedmed_fedavg", ["method.dropout=-0.1"], ["method.dropout=-0.1", "[0, 1)"]),
    ("fedmed_fedavg", ["benchmark.test_size=0"], ["benchmark.test_size=0", ">= 1"]),
    ("fedmed_fedavg", ["benchmark.train_sizes.vqa=-3"], ["benchmark.train_sizes.vqa=-3"]),
    ("fedmed_fedavg", ["model.pretrain.batch_size=0"], ["model.pretrain.batch_size=0"]),
    ("fedmed_fedavg", ["method.target_modules=[]"], ["method.target_modules=[]", "at least one"]),
    ("fedmed_fedadam", ["aggregator.eta=0"], ["aggregator.eta=0", "> 0"]),
    ("fedmed_fedavg", ["+federation.round=3"], ["federation.round", "federation.rounds"]),
    ("fedmed_fedavg", ["+method.lora_alpha=8"], ["method.lora_alpha", "method.alpha"]),
    ("fedmed_mole", ["+method.target_modules=[q_proj]"], ["method.lora_targets"]),
]


@pytest.mark.parametrize(("experiment", "overrides", "expected"), BAD, ids=lambda v: str(v))
def test_bad_setting_is_refused_before_anything_is_built(
    experiment, overrides, expected, make_cfg, monkeypatch
):
    cfg = make_cfg(experiment, *overrides)
    built = []
    monkeypatch.setattr(build, "instantiate", lambda node, **kw: built.append(node))
    with pytest.raises(ConfigError) as refused:
        build.build_components(cfg)
    message = str(refused.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message
    assert built == []  # not even the benchmark


def test_a_count_of_clients_above_the_benchmarks_is_refused_before_the_model(make_cfg, monkeypatch):
    cfg = make_cfg("fedmed_fedavg", "federation.clients_per_round=4")
    real = build.instantiate
    built = []

    def instantiate(node, **kw):
        built.append(str(node["_target_"]))
        if len(built) > 1:
            raise AssertionError(f"built {built[-1]} after the benchmark")
        return real(node, **kw)

    monkeypatch.setattr(build, "instantiate", instantiate)
    with pytest.raises(ConfigError, match=r"clients_per_round=4: .*\[1, 3\]"):
        build.build_components(cfg)
    assert len(built) == 1  # the benchmark only (its client count is the bound)


@pytest.mark.parametrize(
    "experiment", sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
)
def test_every_packaged_experiment_passes(experiment, make_cfg):
    validate_config(make_cfg(experiment, smoke=False))
    validate_config(make_cfg(experiment))


def test_ranges_by_hand():
    unit = Range(float, low=0, high=1, high_open=True)
    assert unit.admits(0) and unit.admits(0.999) and not unit.admits(1.0)
    assert not unit.admits(True) and not unit.admits("0.5") and not unit.admits(float("nan"))
    assert Range(int, low=1).describe() == "an integer >= 1"
    assert unit.describe() == "a number in [0, 1)"
    assert not Range(int, low=1).admits(2.0)


def test_command_line_typo_gets_one_line_with_the_names_that_exist(tmp_path):
    # Without "+", Hydra itself refuses the key while composing, before train.py runs.
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "experiment=fedmed_fedavg",
            "method.lora_targets=[q_proj]",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "method.lora_targets" in lines[0] and "did you mean method.target_modules" in lines[0]
    assert not (tmp_path / "logs").exists()
