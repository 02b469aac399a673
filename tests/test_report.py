"""The comparison report on hand-made results.json files with hand-computed expectations."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from fedmllm.report import collect, compare
from fedmllm.report.__main__ import main
from fedmllm.report.cells import comparison_spec, costs_spec, human_bytes
from fedmllm.report.curves import drift_series, mean_series, train_loss
from fedmllm.report.export import comparison_csv, costs_csv, to_latex, to_markdown

CLIENTS = {"vqa": ("vqa", "em"), "report": ("report", "rougeL")}
# What train.py writes for these methods (their configs' display_name / report_group).
LABELS = {
    "standalone": ("Standalone", "Reference"),
    "centralized": ("Centralized", "Reference"),
    "fedavg": ("FedAvg", "Global"),
    "fedprox": ("FedProx", "Global"),
    "fedsa": ("FedSA-LoRA", "Personalised"),
    "mole": ("Fed-MoLE", "Ours"),
}


def write_run(
    root: Path,
    name: str,
    method: str,
    seed: int,
    scores: dict[str, float],
    *,
    up: int = 0,
    down: int = 0,
    rounds: int = 2,
    config: dict | None = None,
    **extra,
) -> Path:
    """A results.json shaped like train.build_results writes it."""
    clients = {
        cid: {
            "task": CLIENTS[cid][0],
            "main_metric": CLIENTS[cid][1],
            "scores": {CLIENTS[cid][1]: v, "other": -1.0},
            "baseline": {CLIENTS[cid][1]: 0.1},
        }
        for cid, v in scores.items()
    }
    display, group = LABELS.get(method, (method, "Other"))
    results = {
        "method": method,
        "display_name": display,
        "method_group": group,
        "benchmark": "bench",
        "seed": seed,
        "rounds": rounds,
        "clients": clients,
        "avg": sum(scores.values()) / len(scores),
        "baseline_avg": 0.1,
        "comm": {"up_bytes": up, "down_bytes": down},
        "wall_s": 10.0 + seed,
        "peak_rss_mb": 500.0,
        "history": [],
        "config": {"seed": seed, "benchmark": {"seed": seed}, **(config or {})},
        **extra,
    }
    path = root / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(results))
    return path


@pytest.fixture
def two_methods(tmp_path: Path) -> Path:
    write_run(tmp_path, "0", "standalone", 0, {"vqa": 0.60, "report": 0.20})
    write_run(tmp_path, "1", "standalone", 1, {"vqa": 0.70, "report": 0.30})
    write_run(tmp_path, "2", "fedavg", 0, {"vqa": 0.50, "report": 0.40}, up=4000, down=6000)
    write_run(
        tmp_path, "3", "fedavg", 1, {"vqa": 0.70, "report": 0.40}, up=4000, down=6000,
        cross_client={"vqa": {"report": 0.1}}, drift={"anything": 1},  # keys of other issues
    )  # fmt: skip
    return tmp_path


def test_mean_std_delta_and_flags_by_hand(two_methods):
    [comp] = compare(collect([two_methods]))
    sa, fa = comp.rows
    assert (sa.method, fa.method) == ("standalone", "fedavg") and comp.reference is sa
    assert fa.scores["vqa"].mean == pytest.approx(0.60)
    assert sa.scores["vqa"].std == pytest.approx(math.sqrt(2 * 0.05**2))  # sample std, n-1 = 1
    assert fa.delta["vqa"] == pytest.approx(-0.05) and fa.delta["report"] == pytest.approx(0.15)
    assert fa.delta["Avg"] == pytest.approx(0.50 - 0.45)  # Avg means: (.45+.55)/2 vs (.4+.5)/2
    assert fa.below_reference == ["vqa"] and sa.below_reference == []
    assert comp.best == {"vqa": {"Standalone"}, "report": {"FedAvg"}, "Avg": {"FedAvg"}}

    md = to_markdown(comparison_spec(comp))
    assert "| **65.00 ± 7.07** | — |" in md  # best vqa, and Standalone has no Δ
    assert "| 60.00 ± 14.14 | -5.00 ↓ | **40.00 ± 0.00** | +15.00 ↑ |" in md
    assert "1+1<1: FedAvg below Standalone on vqa" in md
    assert md.index("*Reference*") < md.index("*Global*")


def test_csv_carries_unrounded_percent_and_costs_by_hand(two_methods):
    [comp] = compare(collect([two_methods]))
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(comparison_csv(comp)))}
    assert float(rows["fedavg"]["vqa_mean"]) == pytest.approx(60.0)
    assert float(rows["fedavg"]["report_delta"]) == pytest.approx(15.0)
    assert rows["standalone"]["vqa_delta"] == "" and rows["fedavg"]["below_reference"] == "vqa"
    assert rows["fedavg"]["seeds"] == "0 1"
    costs = {r["method"]: r for r in csv.DictReader(io.StringIO(costs_csv(comp)))}
    assert float(costs["fedavg"]["up_per_round"]) == 2000.0  # 4000 bytes / 2 rounds
    assert float(costs["fedavg"]["total_bytes"]) == 10000.0
    assert float(costs["fedavg"]["wall_s"]) == 10.5  # seeds 0 and 1: 10 s and 11 s
    spec = costs_spec(comp)
    assert [c.text for c in spec.sections[1].rows[0]][3:6] == ["1.95 KiB", "2.93 KiB", "9.77 KiB"]
    assert human_bytes(512) == "512 B" and human_bytes(3 * 2**30) == "3.00 GiB"


def test_latex_escapes_and_bolds(two_methods, tmp_path):
    write_run(two_methods, "4", "my_method", 0, {"vqa": 0.99, "report": 0.0})
    [comp] = compare(collect([two_methods]))
    tex = to_latex(comparison_spec(comp))
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\begin{tabular}{ll" in tex
    assert "my\\_method" in tex and "my_method" not in tex.replace("my\\_method", "")
    assert "\\textbf{99.00}" in tex  # one seed: no ± ; best vqa
    assert "$\\pm$" in tex and "$\\downarrow$" in tex and "\\%" in tex
    assert "\\multicolumn{9}{l}{\\textit{Other}}" in tex  # unknown method → Other block


def test_groups_order_override_and_centralized_not_bold(tmp_path):
    for i, (m, v) in enumerate(
        [("zzz", 0.1), ("mole", 0.5), ("fedsa", 0.4), ("fedprox", 0.3), ("centralized", 0.9)]
    ):
        write_run(tmp_path, str(i), m, 0, {"vqa": v, "report": v})
    write_run(tmp_path, "x", "fedavg", 0, {"vqa": 0.2, "report": 0.2}, method_group="Ours")
    [comp] = compare(collect([tmp_path]))
    assert [(r.group, r.method) for r in comp.rows] == [
        ("Reference", "centralized"),
        ("Global", "fedprox"),
        ("Personalised", "fedsa"),
        ("Ours", "mole"),  # "Fed-MoLE" sorts before "FedAvg"
        ("Ours", "fedavg"),
        ("Other", "zzz"),
    ]
    assert comp.reference is None and comp.best["Avg"] == {"Fed-MoLE"}
    assert all(d is None for r in comp.rows for d in r.delta.values())


def test_ablation_variants_become_rows_each_compared_with_its_own_standalone(tmp_path):
    for seed in (0, 1):
        for method in ("fedavg", "standalone"):
            for r in (4, 16):
                cfg = {"method": {"r": r}, "paths": {"log_dir": f"/x/{seed}{r}"}}
                score = r / 100 + (0.1 if method == "standalone" else 0.0)
                write_run(tmp_path, f"{method}{seed}{r}", method, seed, {"vqa": score}, config=cfg)
    [comp] = compare(collect([tmp_path]))
    labels = [r.label for r in comp.rows]  # numbers sort as numbers: 4 before 16
    assert labels == [
        "Standalone [method.r=4]",
        "Standalone [method.r=16]",
        "FedAvg [method.r=4]",
        "FedAvg [method.r=16]",
    ]
    assert all(r.seeds == [0, 1] for r in comp.rows)  # benchmark.seed follows seed: not a variant
    fa4, fa16 = comp.rows[2], comp.rows[3]
    assert fa4.reference is comp.rows[0] and fa16.reference is comp.rows[1]
    assert fa4.delta["vqa"] == pytest.approx(-0.1) and fa16.delta["vqa"] == pytest.approx(-0.1)
    assert comp.rows[1].delta["vqa"] is None  # each Standalone is its own variant's reference
    notes = comparison_spec(comp).notes
    assert "1+1<1: FedAvg [method.r=16] below Standalone [method.r=16] on vqa" in notes


def test_history_series_mix_eval_and_round_entries(tmp_path):
    cos = [[1.0, 0.2], [0.4, 1.0]]
    history = [
        {"round": 1, "train": {"vqa": {"loss": 2.0}}, "drift": {"variance": 0.5}},
        {"round": 2, "train": {"vqa": {"loss": 1.0}}, "drift": {"cos_pairwise": cos}},
        {"round": 2, "scores": {"vqa": {"em": 0.5}}},
    ]
    p = write_run(tmp_path, "a", "fedavg", 0, {"vqa": 0.5}, history=history)
    [run] = collect([p])
    assert train_loss(run) == {"vqa": {1: 2.0, 2: 1.0}}
    assert drift_series(run, "variance") == {1: 0.5}
    assert drift_series(run, "cos_pairwise") == {2: pytest.approx(0.3)}
    assert mean_series([{1: 1.0, 2: 3.0}, {1: 2.0}]) == ([1], [1.5])  # common rounds only


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"method": "fedavg"}', "missing key 'clients'"),
        ('{"clients": {"vqa": {"main_metric": "em", "scores": {}}}}', "no score for its main"),
    ],
)
def test_bad_results_name_the_file_and_the_problem(tmp_path, content, message, capsys):
    bad = tmp_path / "r" / "results.json"
    bad.parent.mkdir()
    bad.write_text(content)
    assert main([str(tmp_path), "--no-export"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(bad) in err


def test_missing_paths_are_clear_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "no results.json under" in capsys.readouterr().err


def test_peak_rss_reset_makes_the_peak_per_run():
    import resource

    from fedmllm.utils.memory import reset_peak_rss

    block = bytearray(300 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
    del block
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not reset_peak_rss():
        pytest.skip("this OS cannot reset the RSS high-water mark")
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_before - peak_after > 250  # the freed 300 MiB no longer counts


def test_costs_note_names_runs_with_process_wide_peak(two_methods):
    write_run(two_methods, "5", "fedprox", 0, {"vqa": 0.5, "report": 0.5}, peak_rss_scope="run")
    [comp] = compare(collect([two_methods]))
    [note] = [n for n in costs_spec(comp).notes if "process-wide" in n]
    assert "FedAvg" in note and "Standalone" in note and "FedProx" not in note
