"""Every command of README.md and docs/*.md, run as written.

The fenced code blocks are read in order (README first, then docs/ by name; docs/extending.md
has its own literal test, tests/test_extending.py). Every ``python train.py``, ``python
eval.py`` and ``python -m fedmllm....`` command runs in ONE fresh working directory, as a
reader following the docs in a checkout would: ``train.py`` and ``eval.py`` beside it, and
``data/`` (the default ``paths.data_dir``) linked to the session's cache so the smoke model
is pretrained once. Only sizes shrink: ``debug=smoke`` is appended where the command builds a
federation, sweeps are cut to their first two values, an Optuna search to two trials; no
``paths.*`` override is added. A ``<placeholder>`` (``logs/multiruns/<time>``, ``<run dir>``)
becomes the newest folder the earlier commands left. A command that needs a GPU, a server or
data to be fetched ends with ``# needs: <what>`` and is skipped with that reason.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OWN_TEST = {"extending.md"}  # tests/test_extending.py follows it literally
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
ENTRY = re.compile(r"python (train\.py|eval\.py|-m fedmllm(\.\w+)*)")
EMBEDDED = re.compile(r"\$\(" + ENTRY.pattern)  # flwr run "$(python -m fedmllm...)"
NEEDS = re.compile(r"#\s*needs:\s*(.+?)\s*$")
SMOKE = {
    "train.py",
    "fedmllm.train",
    "fedmllm.data.inspect",
    "fedmllm.deploy.flower",
    "fedmllm.cost",
}
"""Entry points that build a federation or a benchmark: ``debug=smoke`` makes them small."""


@dataclass
class DocCommand:
    """One command as the docs write it."""

    where: str  # "README.md:15"
    text: str  # the command line, continuation lines joined, trailing comment kept
    needs: str | None  # the ``# needs:`` reason it is skipped for
    embedded: bool = False  # inside another program's command line (``flwr run "$(...)"``)


def _logical_lines(body: str, first: int) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` with backslash continuations joined."""
    start, parts = None, []
    for i, line in enumerate(body.splitlines(), first):
        start = i if start is None else start
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        yield start, " ".join(p.strip() for p in [*parts, line])
        start, parts = None, []


def collect_commands() -> list[DocCommand]:
    """The documented commands, in reading order."""
    found = []
    for doc in DOCS:
        if doc.name in OWN_TEST:
            continue
        text = doc.read_text()
        for block in FENCE.finditer(text):
            first = text[: block.start(1)].count("\n") + 1
            for line_no, line in _logical_lines(block.group(1), first):
                stripped = line.strip().removeprefix("$ ")
                segments = stripped.split(" && ")
                if stripped.startswith("#") or not (
                    any(ENTRY.match(seg) for seg in segments) or EMBEDDED.search(stripped)
                ):
                    continue
                needs = NEEDS.search(stripped)
                where = f"{doc.relative_to(ROOT)}:{line_no}"
                for segment in segments:
                    if ENTRY.match(segment):
                        found.append(DocCommand(where, segment, needs and needs.group(1)))
                    elif EMBEDDED.search(segment):
                        found.append(DocCommand(where, segment, needs and needs.group(1), True))
    return found


def _entry(argv: list[str]) -> tuple[str, int]:
    """The script or module a command runs, and where its arguments start."""
    return (argv[2], 3) if argv[1] == "-m" else (argv[1], 2)


def _first_two(value: str) -> str:
    """A sweep ``a,b,c`` cut to ``a,b`` (commas inside brackets are a list, not a sweep)."""
    parts, depth, cur = [], 0, ""
    for ch in value:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return ",".join([*parts, cur][:2])


def _cut(arg: str) -> str:
    key, sep, value = arg.partition("=")
    return arg if not sep or key.startswith("hydra.") else f"{key}={_first_two(value)}"


def shrink(argv: list[str]) -> list[str]:
    """The command with only its sizes shrunk (see the module docstring)."""
    entry, at = _entry(argv)
    args = argv[at:]
    keys = {a.split("=", 1)[0] for a in args if "=" in a}
    sweep = bool({"-m", "--multirun"} & set(args)) or "hparams_search" in keys
    if sweep:
        args = [_cut(a) for a in args]
    if "hparams_search" in keys:
        args.append("hydra.sweeper.n_trials=2")
    if entry in SMOKE and "debug" not in keys:
        args.append("debug=smoke")
    return [*argv[:at], *args]


def _newest(paths: list[Path], what: str) -> Path:
    if not paths:
        raise AssertionError(f"no {what} left by the earlier commands")
    return max(paths, key=lambda p: p.stat().st_mtime)


def _runs(work: Path) -> list[Path]:
    return [p.parent for p in work.glob("logs/*/runs/*/results.json")]


def fill(text: str, work: Path) -> str:
    """Placeholders of a documented command -> what the earlier commands left."""
    for prefix, name in re.findall(r"(\S*)<([^>]+)>", text):
        if name == "time":  # the newest folder where the path points: logs/multiruns/<time>
            parent = work / prefix
            value = _newest([p for p in parent.iterdir() if p.is_dir()], f"folder in {parent}")
            text = text.replace(f"{prefix}<time>", str(value), 1)
            continue
        if name in ("run dir", "train.py run dir"):
            value = _newest([p for p in _runs(work) if not p.name.endswith("_flower")], name)
        elif name == "flower run dir":
            value = _newest([p for p in _runs(work) if p.name.endswith("_flower")], name)
        else:
            raise AssertionError(f"no rule for the placeholder <{name}> in {text!r}")
        text = text.replace(f"<{name}>", str(value))
    return text


COMMANDS = collect_commands()


@pytest.fixture(scope="module")
def work(tmp_path_factory, cache_dir) -> Path:
    """A fresh working directory as a checkout has it: the two scripts and a data cache."""
    root = tmp_path_factory.mktemp("docs")
    for name in ("train.py", "eval.py"):
        (root / name).symlink_to(ROOT / name)
    (root / "data").symlink_to(cache_dir, target_is_directory=True)
    return root


def test_the_docs_are_read():
    wheres = [c.where.split(":")[0] for c in COMMANDS]
    assert (
        wheres[0] == "README.md" and COMMANDS[0].text == "python train.py experiment=fedmed_fedavg"
    )
    assert {"docs/data.md", "docs/metrics.md", "docs/methods.md", "docs/modality.md"} <= set(wheres)
    assert not any("extending" in w for w in wheres)
    assert shrink(shlex.split("python train.py -m experiment=a,b,c x.y=[1,2,3] seed=0,1,2")) == [
        *shlex.split("python train.py -m experiment=a,b x.y=[1,2,3] seed=0,1 debug=smoke")
    ]


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{c.where} {c.text[:70]}" for c in COMMANDS])
def test_documented_command_runs_as_written(cmd: DocCommand, work: Path):
    if cmd.needs:
        pytest.skip(f"needs {cmd.needs}")
    assert not cmd.embedded, (
        f"{cmd.where}: `{cmd.text}` runs inside another program's command line; run it on its "
        "own or end the line with `# needs: <what>`"
    )
    argv = shrink(shlex.split(fill(cmd.text, work), comments=True))
    argv = [sys.executable, *argv[1:]]
    ran = work / ".ran"
    done = set(ran.read_text().splitlines()) if ran.exists() else set()
    key = shlex.join(argv[1:])
    if key in done:
        pytest.skip("the same command ran earlier in the docs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    with ran.open("a") as f:
        f.write(key + "\n")
    assert proc.returncode == 0, (
        f"{cmd.where}: `{cmd.text}` failed (exit {proc.returncode}) as "
        f"`{shlex.join(argv[1:])}`:\n{proc.stderr[-3000:]}"
    )
