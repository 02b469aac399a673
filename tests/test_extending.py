"""docs/extending.md, followed literally: its files written as shown, its commands run.

Every fenced block whose first line is ``# <path>`` is written to that path in a temporary
directory; every ``python -m fedmllm.train`` command is run there as written, with only the
sizes shrunk (``debug=smoke``) and the caches and logs pointed into the directory. The rule's
maths is then checked by hand on small tensors.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedmllm.types import ClientUpdate

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory, cache_dir) -> tuple[Path, list[Path]]:
    """The doc's files written out and its commands run; the run directories, in order."""
    root = tmp_path_factory.mktemp("extending")
    commands = []
    for lang, body in BLOCK.findall(DOC.read_text()):
        first = body.splitlines()[0]
        if first.startswith("# ") and lang in ("python", "yaml"):
            path = root / first[2:].strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        elif lang == "bash":
            commands += [line for line in body.splitlines() if "python -m fedmllm.train" in line]
    assert len(commands) == 2, commands
    (root / "my_lab" / "__init__.py").touch()
    runs = []
    for i, command in enumerate(commands):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        argv = shlex.split(command.replace("$PWD", str(root)))
        for name, value in (a.split("=", 1) for a in argv if re.match(r"^[A-Z]+=", a)):
            # Prepended, so that fedmllm itself stays where this test session found it.
            env[name] = os.pathsep.join(filter(None, [value, env.get(name)]))
        argv = [a for a in argv if not re.match(r"^[A-Z]+=", a)]
        out = root / f"run{i}"
        argv = [sys.executable, *argv[1:], "debug=smoke", "threads=1", "logger=none"]
        argv += [f"paths.data_dir={cache_dir}", f"hydra.run.dir={out}"]
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(out)
    return root, runs


def test_the_rule_runs_and_is_named_by_its_class(walkthrough):
    _, (rule_run, _) = walkthrough
    results = json.loads((rule_run / "results.json").read_text())
    assert results["method"] == "fedavgm"
    assert (results["display_name"], results["method_group"]) == ("FedAvgM", "Global")
    assert results["aggregator"] == {"aggregator": "fedavgm", "weighting": "samples", "beta": 0.9}
    assert results["comm"]["up_bytes"] > 0


def test_the_method_keeps_its_mlp_adapters_home(walkthrough):
    _, (_, method_run) = walkthrough
    results = json.loads((method_run / "results.json").read_text())
    assert (results["display_name"], results["method_group"]) == ("FedPer-LoRA", "Personalised")
    ckpt = torch.load(method_run / "last.ckpt", weights_only=False)
    shared, private = set(ckpt["global_state"]), set(ckpt["client_store"]["vqa"]["private"])
    assert shared and private and not shared & private
    assert all(".up_proj." in k or ".down_proj." in k for k in private)
    assert not any(".up_proj." in k or ".down_proj." in k for k in shared)


def test_the_rule_is_server_momentum_by_hand(walkthrough):
    root, _ = walkthrough
    sys.path.insert(0, str(root))
    try:
        rule = importlib.import_module("my_lab.fedavgm").FedAvgM(beta=0.5)
    finally:
        sys.path.remove(str(root))
    x = {"w": torch.tensor([1.0, 2.0])}
    ups = [
        ClientUpdate("a", {"w": torch.tensor([3.0, 2.0])}, 1),
        ClientUpdate("b", {"w": torch.tensor([1.0, 6.0])}, 3),
    ]
    # mean = (3·1 + 1·3)/4, (2·1 + 6·3)/4 = (1.5, 5); Δ = (0.5, 3); v = Δ; x = (1.5, 5)
    x1 = rule.aggregate(x, ups, 0)
    torch.testing.assert_close(x1["w"], torch.tensor([1.5, 5.0]))
    # Δ = mean − x1 = (0, 0); v = 0.5·(0.5, 3) = (0.25, 1.5); x = (1.75, 6.5)
    x2 = rule.aggregate(x1, ups, 1)
    torch.testing.assert_close(x2["w"], torch.tensor([1.75, 6.5]))
