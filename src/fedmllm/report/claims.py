"""``python -m fedmllm.report.claims <multirun dirs...>``: the papers' qualitative claims, checked.

Each claim is a set of orderings ``low < high`` (or ``≤``) between two *arms*, an arm being the
runs whose ``results.json`` match a few dotted keys (``method``, ``aggregator.mode``,
``config.method.stage_schedule.mode`` ...). Runs are grouped by setting (benchmark and
partition scheme); in each setting and for each seed present in every arm of a claim, the
paired difference ``high − low`` is taken per ordering, and the claim holds in a seed when
every ordering does. A claim whose arms are missing is reported as not measured.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedmllm.report.collect import Run, collect
from fedmllm.utils.trees import flatten

Value = str | float | int | bool | None


@dataclass(frozen=True)
class Arm:
    """Runs selected by dotted keys of ``results.json`` and the quantity read from them.

    Attributes:
        label: Printed name.
        match: Dotted key -> allowed value(s); a tuple lists several (``None``: key absent).
        value: Dotted key of the quantity (default ``avg``, the mean main metric).
    """

    label: str
    match: Mapping[str, Value | tuple[Value, ...]]
    value: str = "avg"

    def selects(self, flat: Mapping[str, Any]) -> bool:
        """Whether a flattened ``results.json`` belongs to this arm."""
        for key, want in self.match.items():
            allowed = want if isinstance(want, tuple) else (want,)
            if flat.get(key) not in allowed:
                return False
        return True


@dataclass(frozen=True)
class Claim:
    """A qualitative claim: every ``(low, high)`` ordering must hold in a seed.

    Attributes:
        text: The claim as the papers state it.
        orders: ``(low, high)`` arm pairs.
        strict: ``<`` (True) or ``≤`` (False).
        per_client: Compare every client's main metric instead of the mean.
        iid: Checked on IID settings (True) or on the others (False).
        split_by: Dotted keys whose values split a setting into separate checks.
    """

    text: str
    orders: tuple[tuple[Arm, Arm], ...]
    strict: bool = True
    per_client: bool = False
    iid: bool = False
    split_by: tuple[str, ...] = ()


# ---------------------------------------------------------------- the arms and claims
_DEFAULT_GATING = ("topk_softmax", None)  # runs from before method.gating existed
STANDALONE = Arm("Standalone", {"method": "standalone"})
FEDAVG = Arm("FedAvg", {"method": "fedavg", "aggregator.aggregator": "fedavg"})
MOLE = Arm("Fed-MoLE", {"method": "mole", "config.method.gating": _DEFAULT_GATING})
V1 = Arm("V1", {"method": "mole_v1", "config.method.gating": _DEFAULT_GATING})
M1, M2, M3 = (
    Arm(f"M{i}", {"method": f"mole_m{i}", "config.method.gating": _DEFAULT_GATING})
    for i in (1, 2, 3)
)
# "ridge" / "paper" are the modes' names before issue 17 (always λ / λ only when singular).
FEDA2_TIK = Arm(
    "FedA² Tikhonov",
    {"aggregator.aggregator": "ridge", "aggregator.mode": ("tikhonov", "ridge")},
)
FEDA2_NO_TIK = Arm(
    "FedA² conditional",
    {"aggregator.aggregator": "ridge", "aggregator.mode": ("conditional", "paper")},
)
SIM_SHARED = Arm("Fed-MoLE shared path", MOLE.match, "path_similarity.paths.shared")
SIM_ROUTED = Arm("Fed-MoLE routed path", MOLE.match, "path_similarity.paths.routed")
SIM_FEDAVG = Arm("FedAvg LoRA path", FEDAVG.match, "path_similarity.paths.lora")
_STAGE = "config.method.stage_schedule.mode"
TWO_STAGE = Arm("II-stage", {_STAGE: "two_stage"})
SIMULTANEOUS = Arm("simultaneous", {_STAGE: "simultaneous"})
REVERSE = Arm("reverse", {_STAGE: "reverse"})

CLAIMS: tuple[Claim, ...] = (
    Claim("non-IID FedAvg < Standalone", ((FEDAVG, STANDALONE),)),
    Claim("Fed-MoLE > Standalone on every client", ((STANDALONE, MOLE),), per_client=True),
    Claim("IID FedAvg > Standalone", ((STANDALONE, FEDAVG),), iid=True),
    Claim("FedAvg < V1 < Fed-MoLE", ((FEDAVG, V1), (V1, MOLE))),
    Claim("M1/M2/M3 < Fed-MoLE", ((M1, MOLE), (M2, MOLE), (M3, MOLE))),
    Claim(
        "shared-path similarity > FedAvg > routed",
        ((SIM_FEDAVG, SIM_SHARED), (SIM_ROUTED, SIM_FEDAVG)),
    ),
    Claim("FedA² with Tikhonov ≥ without", ((FEDA2_NO_TIK, FEDA2_TIK),), strict=False),
    Claim("FedA² ≥ FedAvg", ((FEDAVG, FEDA2_TIK),), strict=False),
    Claim(
        "II-stage ≥ simultaneous ≥ reverse",
        ((SIMULTANEOUS, TWO_STAGE), (REVERSE, SIMULTANEOUS)),
        strict=False,
        split_by=("aggregator.aggregator",),
    ),
)


# ---------------------------------------------------------------- evaluation
@dataclass
class Ordering:
    """One ``low < high`` comparison, paired by seed.

    Attributes:
        low, high: Arm labels.
        low_mean, high_mean: Means over the paired seeds.
        diffs: Seed -> ``high − low`` (per client: the smallest client difference).
    """

    low: str
    high: str
    low_mean: float
    high_mean: float
    diffs: dict[int, float]


@dataclass
class Verdict:
    """A claim checked in one setting.

    Attributes:
        claim: The claim.
        setting: ``benchmark (partition …)`` plus any split value.
        orderings: The measured orderings (empty when not measured).
        seeds_held: Seeds in which every ordering held.
        seeds: Seeds measured in every arm.
        missing: Why the claim could not be checked ("" when it was).
    """

    claim: Claim
    setting: str
    orderings: list[Ordering] = field(default_factory=list)
    seeds_held: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    missing: str = ""

    @property
    def summary(self) -> str:
        """``holds in n/N seeds``, ``does not hold (0/N seeds)`` or ``not measured: …``."""
        if self.missing:
            return f"not measured: {self.missing}"
        n, total = len(self.seeds_held), len(self.seeds)
        return f"holds in {n}/{total} seeds" if n else f"does not hold (0/{total} seeds)"


def _scheme(flat: Mapping[str, Any]) -> str:
    return str(flat.get("config.benchmark.partition.scheme") or "default")


def _values(arm: Arm, runs: Sequence[tuple[Run, dict[str, Any]]], per_client: bool) -> dict:
    """Seed -> value (a float, or client -> float); raises on two runs of one seed."""
    out: dict[int, Any] = {}
    for run, flat in runs:
        if not arm.selects(flat):
            continue
        if run.seed in out:
            raise ValueError(
                f"{arm.label}: several runs for seed {run.seed} (e.g. {run.path}); pass a "
                "directory that holds one run per arm and seed"
            )
        if per_client:
            out[run.seed] = {cid: c.value for cid, c in run.clients.items()}
        elif arm.value in flat and flat[arm.value] is not None:
            out[run.seed] = float(flat[arm.value])
    return out


def _order(low: Arm, high: Arm, lo: dict, hi: dict, seeds: list[int], per_client: bool):
    if per_client:
        diffs = {s: min(hi[s][c] - lo[s][c] for c in lo[s]) for s in seeds}
        lo_m = sum(sum(lo[s].values()) / len(lo[s]) for s in seeds) / len(seeds)
        hi_m = sum(sum(hi[s].values()) / len(hi[s]) for s in seeds) / len(seeds)
    else:
        diffs = {s: hi[s] - lo[s] for s in seeds}
        lo_m = sum(lo[s] for s in seeds) / len(seeds)
        hi_m = sum(hi[s] for s in seeds) / len(seeds)
    return Ordering(low.label, high.label, lo_m, hi_m, diffs)


def check_claim(claim: Claim, runs: Sequence[tuple[Run, dict[str, Any]]], setting: str) -> Verdict:
    """Evaluate one claim on the runs of one setting."""
    verdict = Verdict(claim, setting)
    values = []
    for low, high in claim.orders:
        lo, hi = (_values(a, runs, claim.per_client) for a in (low, high))
        for arm, got in ((low, lo), (high, hi)):
            if not got:
                verdict.missing = f"no run of {arm.label}" + (
                    f" with {arm.value}" if arm.value != "avg" else ""
                )
                return verdict
        values.append((low, high, lo, hi))
    seeds = sorted(set.intersection(*(set(lo) & set(hi) for _, _, lo, hi in values)))
    if not seeds:
        verdict.missing = "no seed is present in every arm"
        return verdict
    verdict.seeds = seeds
    for low, high, lo, hi in values:
        verdict.orderings.append(_order(low, high, lo, hi, seeds, claim.per_client))
    ok = (lambda d: d > 0) if claim.strict else (lambda d: d >= 0)
    verdict.seeds_held = [s for s in seeds if all(ok(o.diffs[s]) for o in verdict.orderings)]
    return verdict


def check_all(runs: Iterable[Run], claims: Sequence[Claim] = CLAIMS) -> list[Verdict]:
    """Every claim in every setting (benchmark × partition scheme) it applies to."""
    settings: dict[tuple[str, str], list[tuple[Run, dict[str, Any]]]] = {}
    for run in runs:
        flat = flatten(run.raw)
        settings.setdefault((run.benchmark, _scheme(flat)), []).append((run, flat))
    verdicts = []
    for (bench, scheme), members in sorted(settings.items()):
        for claim in claims:
            if claim.iid != (scheme == "iid"):
                continue
            groups: dict[tuple, list] = {}
            for run, flat in members:
                groups.setdefault(tuple(flat.get(k) for k in claim.split_by), []).append(
                    (run, flat)
                )
            found = []
            for key, group in sorted(groups.items(), key=lambda kv: str(kv[0])):
                extra = ", ".join(f"{k}={v}" for k, v in zip(claim.split_by, key, strict=True))
                where = f"{bench} (partition {scheme}{', ' + extra if extra else ''})"
                found.append(check_claim(claim, group, where))
            if claim.split_by and all(v.missing for v in found):  # nothing to split: say it once
                found = [check_claim(claim, members, f"{bench} (partition {scheme})")]
            verdicts.extend(found)
    return verdicts


# ---------------------------------------------------------------- printing
def _pct(x: float) -> str:
    return f"{100 * x:.2f}" if math.isfinite(x) else "nan"


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    """Plain-text report: per setting, each claim with means, paired differences, verdict."""
    lines, last = [], None
    for v in verdicts:
        if v.setting != last:
            lines.append(f"\n== {v.setting}")
            last = v.setting
        lines.append(f"- {v.claim.text}: {v.summary}")
        sign = "<" if v.claim.strict else "≤"
        unit = " (smallest client difference)" if v.claim.per_client else ""
        for o in v.orderings:
            diffs = ", ".join(f"s{s} {100 * d:+.2f}" for s, d in sorted(o.diffs.items()))
            mean = sum(o.diffs.values()) / len(o.diffs)
            lines.append(
                f"    claim {o.low} {sign} {o.high}: means {o.low} {_pct(o.low_mean)}, "
                f"{o.high} {_pct(o.high_mean)}; {o.high} − {o.low}{unit} per seed: {diffs} "
                f"(mean {100 * mean:+.2f})"
            )
    return "\n".join(lines).lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    """Print every claim's verdict for the runs under the given paths (exit 2 on bad input)."""
    p = argparse.ArgumentParser(
        prog="python -m fedmllm.report.claims",
        description="Check the papers' qualitative claims on finished runs: means, paired "
        "differences over seeds, and in how many seeds each claim holds (values in %).",
    )
    p.add_argument("paths", nargs="+", help="run dirs, multirun dirs or results.json files")
    args = p.parse_args(argv)
    try:
        verdicts = check_all(collect(args.paths))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_verdicts(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
