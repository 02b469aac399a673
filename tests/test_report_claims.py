"""The claims checker on hand-made results.json files, with hand-computed verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedmllm.report import claims
from fedmllm.report.collect import collect


def write(root: Path, name: str, method: str, seed: int, scores: dict[str, float], **extra) -> None:
    """A results.json with the keys the checker reads (two clients, main metric ``m``)."""
    config = extra.pop("config", {})
    results = {
        "method": method,
        "benchmark": extra.pop("benchmark", "bench"),
        "seed": seed,
        "rounds": 2,
        "clients": {
            cid: {"task": "vqa", "main_metric": "m", "scores": {"m": v}}
            for cid, v in scores.items()
        },
        "avg": sum(scores.values()) / len(scores),
        "comm": {"up_bytes": 0, "down_bytes": 0},
        "aggregator": extra.pop("aggregator", {"aggregator": "fedavg"}),
        "config": {"seed": seed, **config},
        **extra,
    }
    path = root / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(results))


def _verdicts(root: Path) -> dict[str, claims.Verdict]:
    return {v.claim.text: v for v in claims.check_all(collect([root]))}


@pytest.fixture
def fedmed(tmp_path: Path) -> Path:
    # Standalone: (a, b) = (0.6, 0.4) in every seed, mean 0.5.
    # FedAvg avg per seed: 0.45, 0.55, 0.40  -> below Standalone in seeds 0 and 2 only.
    # Fed-MoLE: above Standalone on both clients in seeds 0, 1; seed 2 has b = 0.39 < 0.4.
    fedavg = {0: (0.5, 0.4), 1: (0.6, 0.5), 2: (0.5, 0.3)}
    mole = {0: (0.7, 0.5), 1: (0.65, 0.45), 2: (0.8, 0.39)}
    for s in range(3):
        write(
            tmp_path,
            f"sa{s}",
            "standalone",
            s,
            {"a": 0.6, "b": 0.4},
            aggregator={"aggregator": "none"},
        )
        write(tmp_path, f"fa{s}", "fedavg", s, dict(zip("ab", fedavg[s], strict=True)))
        write(tmp_path, f"mo{s}", "mole", s, dict(zip("ab", mole[s], strict=True)))
    return tmp_path


def test_fedavg_below_standalone_holds_in_two_of_three_seeds(fedmed: Path) -> None:
    v = _verdicts(fedmed)["non-IID FedAvg < Standalone"]
    assert v.summary == "holds in 2/3 seeds" and v.seeds_held == [0, 2]
    (o,) = v.orderings
    assert (o.low, o.high) == ("FedAvg", "Standalone")
    # Standalone − FedAvg per seed: 0.05, −0.05, 0.10; means 0.4667 and 0.5.
    assert o.diffs == pytest.approx({0: 0.05, 1: -0.05, 2: 0.10})
    assert (o.low_mean, o.high_mean) == pytest.approx((1.4 / 3, 0.5))


def test_every_client_claim_uses_the_smallest_client_difference(fedmed: Path) -> None:
    v = _verdicts(fedmed)["Fed-MoLE > Standalone on every client"]
    # Per seed min over clients of MoLE − Standalone: 0.1, 0.05, −0.01.
    assert v.orderings[0].diffs == pytest.approx({0: 0.10, 1: 0.05, 2: -0.01})
    assert v.summary == "holds in 2/3 seeds"


def test_missing_arms_are_reported_not_guessed(fedmed: Path) -> None:
    got = _verdicts(fedmed)
    assert got["FedAvg < V1 < Fed-MoLE"].summary == "not measured: no run of V1"
    assert "IID FedAvg > Standalone" not in got  # no IID setting in the directory


def test_chain_holds_only_where_every_link_holds(tmp_path: Path) -> None:
    # seed 0: 0.3 < 0.4 < 0.5 holds; seed 1: V1 0.6 > MoLE 0.5 breaks the second link.
    for s, (fa, v1, mo) in enumerate([(0.3, 0.4, 0.5), (0.3, 0.6, 0.5)]):
        write(tmp_path, f"f{s}", "fedavg", s, {"a": fa})
        write(tmp_path, f"v{s}", "mole_v1", s, {"a": v1})
        write(tmp_path, f"m{s}", "mole", s, {"a": mo})
    v = _verdicts(tmp_path)["FedAvg < V1 < Fed-MoLE"]
    assert v.seeds_held == [0] and v.summary == "holds in 1/2 seeds"
    assert v.orderings[1].diffs == pytest.approx({0: 0.1, 1: -0.1})


def test_tikhonov_claim_is_non_strict_and_reads_old_mode_names(tmp_path: Path) -> None:
    # Equal scores count for "≥"; "ridge"/"paper" are the pre-rename names of the modes.
    tik = {"aggregator": "ridge", "mode": "tikhonov"}
    old = {"aggregator": "ridge", "mode": "paper"}
    for s, (a, b) in enumerate([(0.5, 0.5), (0.4, 0.45)]):
        write(tmp_path, f"t{s}", "feda2", s, {"a": a}, aggregator=tik)
        write(tmp_path, f"c{s}", "feda2", s, {"a": b}, aggregator=old)
    v = _verdicts(tmp_path)["FedA² with Tikhonov ≥ without"]
    assert v.summary == "holds in 1/2 seeds" and v.seeds_held == [0]


def test_no_seed_in_common_is_not_measured_and_nothing_holds_is_said(tmp_path: Path) -> None:
    write(tmp_path, "s", "standalone", 0, {"a": 0.5})
    write(tmp_path, "f", "fedavg", 1, {"a": 0.4})
    assert _verdicts(tmp_path)["non-IID FedAvg < Standalone"].missing
    write(tmp_path, "f0", "fedavg", 0, {"a": 0.6})
    assert _verdicts(tmp_path)["non-IID FedAvg < Standalone"].summary == "does not hold (0/1 seeds)"


def test_iid_setting_is_checked_separately(tmp_path: Path) -> None:
    iid = {"benchmark": {"partition": {"scheme": "iid"}}}
    write(tmp_path, "s", "standalone", 0, {"a": 0.5}, config=iid)
    write(tmp_path, "f", "fedavg", 0, {"a": 0.6}, config=iid)
    got = _verdicts(tmp_path)
    assert got["IID FedAvg > Standalone"].summary == "holds in 1/1 seeds"
    assert "non-IID FedAvg < Standalone" not in got


def test_path_similarity_claim_reads_the_probe_values(tmp_path: Path) -> None:
    # shared 0.9 > FedAvg 0.5 > routed 0.2 in seed 0; routed 0.6 > FedAvg in seed 1.
    for s, routed in enumerate([0.2, 0.6]):
        sim = {"paths": {"shared": 0.9, "routed": routed}}
        write(tmp_path, f"m{s}", "mole", s, {"a": 0.5}, path_similarity=sim)
        write(tmp_path, f"f{s}", "fedavg", s, {"a": 0.5}, path_similarity={"paths": {"lora": 0.5}})
    v = _verdicts(tmp_path)["shared-path similarity > FedAvg > routed"]
    assert v.seeds_held == [0] and v.summary == "holds in 1/2 seeds"


def test_two_runs_of_one_arm_and_seed_are_refused_and_cli_prints(tmp_path: Path, capsys) -> None:
    write(tmp_path, "s", "standalone", 0, {"a": 0.5})
    write(tmp_path, "f", "fedavg", 0, {"a": 0.4})
    assert claims.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "non-IID FedAvg < Standalone: holds in 1/1 seeds" in out
    assert "s0 +10.00" in out
    write(tmp_path, "f2", "fedavg", 0, {"a": 0.3})
    assert claims.main([str(tmp_path)]) == 2
    assert "several runs for seed 0" in capsys.readouterr().err


def test_split_claims_without_any_arm_are_reported_once(fedmed: Path) -> None:
    stage = [v for v in claims.check_all(collect([fedmed])) if v.claim.text.startswith("II-stage")]
    assert len(stage) == 1 and stage[0].summary == "not measured: no run of simultaneous"


def test_stage_claim_is_checked_per_server_rule(tmp_path: Path) -> None:
    # FedAvg rule: 0.5 ≥ 0.4 ≥ 0.3 holds; ridge rule: reverse 0.6 above simultaneous 0.4 fails.
    scores = {"fedavg": (0.5, 0.4, 0.3), "ridge": (0.5, 0.4, 0.6)}
    for rule, values in scores.items():
        for mode, v in zip(("two_stage", "simultaneous", "reverse"), values, strict=True):
            cfg = {"method": {"stage_schedule": {"mode": mode}}}
            write(
                tmp_path,
                f"{rule}_{mode}",
                "m",
                0,
                {"a": v},
                aggregator={"aggregator": rule},
                config=cfg,
            )
    stage = [
        v for v in claims.check_all(collect([tmp_path])) if v.claim.text.startswith("II-stage")
    ]
    assert [(v.setting.split("=")[-1], v.summary) for v in stage] == [
        ("fedavg)", "holds in 1/1 seeds"),
        ("ridge)", "does not hold (0/1 seeds)"),
    ]
