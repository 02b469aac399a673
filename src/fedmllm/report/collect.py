"""Finding and reading ``results.json`` files of runs and Hydra multiruns.

A run is read into a :class:`Run`: the fields the comparison needs, checked, with the file
named in every error. Keys this module does not know (``cross_client``, ``drift``, ...) are
kept untouched in ``Run.raw``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedmllm.utils.trees import flatten

RESULTS_NAME = "results.json"

REFERENCE, GLOBAL, PERSONALISED, OURS, OTHER = (
    "Reference",
    "Global",
    "Personalised",
    "Ours",
    "Other",
)
GROUP_ORDER = (REFERENCE, GLOBAL, PERSONALISED, OURS, OTHER)
"""Row blocks of the comparison table, as in Table 1 of the Fed-MoLE paper."""

# Config keys that never make two runs different methods: where they ran, how they logged,
# which seed (seeds are what mean ± std is taken over).
IGNORED_CONFIG_PREFIXES = (
    "seed",
    "paths.",
    "hydra.",
    "task_name",
    "threads",
    "logger",
    "resume",
    "compare_to",
    "optimized_metric",
    "fabric.",
    "federation.seed",
    "federation.store_dir",
    "federation.checkpoint",
)


@dataclass
class ClientResult:
    """One client's main metric in one run."""

    task: str
    metric: str
    value: float


@dataclass
class Run:
    """The parts of one ``results.json`` that the report uses (``raw`` keeps the rest)."""

    path: Path
    method: str
    group: str
    benchmark: str
    seed: int
    rounds: int
    clients: dict[str, ClientResult]
    avg: float
    up_bytes: int
    down_bytes: int
    wall_s: float
    peak_rss_mb: float
    history: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    variant: str = ""

    @property
    def display(self) -> str:
        """Paper-style name plus the variant's distinguishing overrides, if any."""
        name = str(self.raw.get("display_name") or self.method)
        return f"{name} [{self.variant}]" if self.variant else name


def method_group(results: dict[str, Any]) -> str:
    """The table block of a run, as its method or rule declared it (``Other`` if neither)."""
    return str(results.get("method_group") or OTHER)


def find_results(paths: Sequence[str | Path]) -> list[Path]:
    """Every ``results.json`` under ``paths`` (files are taken as they are), sorted, unique.

    Raises:
        FileNotFoundError: A path does not exist, or nothing was found at all.
    """
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file():
            found.add(p.resolve())
        elif p.is_dir():
            found.update(f.resolve() for f in p.rglob(RESULTS_NAME))
        else:
            raise FileNotFoundError(f"{p}: no such run directory or results file")
    if not found:
        shown = ", ".join(map(str, paths))
        raise FileNotFoundError(f"no {RESULTS_NAME} under {shown} (did the runs finish?)")
    return sorted(found)


def _need(results: dict[str, Any], key: str, path: Path) -> Any:
    if key not in results:
        raise ValueError(f"{path}: missing key {key!r} (expected a fedmllm results.json)")
    return results[key]


def load_run(path: str | Path) -> Run:
    """Read one ``results.json``.

    Raises:
        ValueError: The file is not JSON or lacks a key the report needs (both named).
    """
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    clients = {}
    for cid, c in _need(results, "clients", path).items():
        metric = c.get("main_metric")
        if metric is None or metric not in c.get("scores", {}):
            raise ValueError(f"{path}: client {cid!r} has no score for its main_metric {metric!r}")
        clients[cid] = ClientResult(c.get("task", ""), metric, float(c["scores"][metric]))
    comm = _need(results, "comm", path)
    return Run(
        path=path,
        method=str(_need(results, "method", path)),
        group=method_group(results),
        benchmark=str(_need(results, "benchmark", path)),
        seed=int(_need(results, "seed", path)),
        rounds=int(_need(results, "rounds", path)),
        clients=clients,
        avg=float(_need(results, "avg", path)),
        up_bytes=int(comm["up_bytes"]),
        down_bytes=int(comm["down_bytes"]),
        wall_s=float(results.get("wall_s", float("nan"))),
        peak_rss_mb=float(results.get("peak_rss_mb", float("nan"))),
        history=list(results.get("history", [])),
        raw=results,
    )


def _ignored(key: str) -> bool:
    return any(key == p.rstrip(".") or key.startswith(p) for p in IGNORED_CONFIG_PREFIXES)


def label_variants(runs: Iterable[Run]) -> None:
    """Set ``Run.variant`` to the config values that differ among runs of the same method.

    Runs of one method on one benchmark that differ only in seed (or paths, logging) share a
    variant and are averaged; an ablation (``method.r=4,8``) becomes one row per value.
    """
    by_method: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        by_method.setdefault((r.benchmark, r.method), []).append(r)
    for same in by_method.values():
        flats = [flatten(r.raw.get("config", {})) for r in same]
        keys = sorted({k for f in flats for k in f if not _ignored(k)})
        varying = [
            k
            for k in keys
            if len({json.dumps(f.get(k), default=str) for f in flats}) > 1
            # keys interpolated from the seed (benchmark.seed: ${seed}) vary with it, no more
            and any(f.get(k) != r.seed for r, f in zip(same, flats, strict=True))
        ]
        for r, f in zip(same, flats, strict=True):
            r.variant = ", ".join(f"{k}={f.get(k)}" for k in varying)


def collect(paths: Sequence[str | Path]) -> list[Run]:
    """Load every run under ``paths`` and label the variants of each method."""
    runs = [load_run(p) for p in find_results(paths)]
    label_variants(runs)
    return runs
