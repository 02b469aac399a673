"""UniFLoW's schedule comparison on unimodal_mix_synth runs end to end (debug=smoke, 2 rounds
of 4 local steps).

What the text-only client skips is fixed by the schedule (it reaches only the LLM side, so
every stage-I step of its update is skipped): two_stage (stage I for steps < τ·4 = 1: step 0)
skips one step a round, reverse (stage II for steps < 0.75·4 = 3, then stage I: step 3) one,
simultaneous none, by_round (T = 0.5 × 2 rounds: round 0 is stage I) all four steps of round 0
and none of round 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedmllm.train import run

SKIPPED_BY_ROUND = {
    "two_stage": [1, 1],
    "reverse": [1, 1],
    "simultaneous": [0, 0],
    "by_round": [4, 0],
}


@pytest.mark.parametrize(
    ("experiment", "mode"),
    [("unimodal_mix_fedavg", m) for m in SKIPPED_BY_ROUND] + [("unimodal_mix_feda2", "by_round")],
)
def test_schedules_run_on_the_mixed_federation(experiment, mode, make_cfg):
    overrides = ("federation.rounds=2", "federation.local_steps=4")
    cfg = make_cfg(experiment, f"method.stage_schedule.mode={mode}", *overrides)
    run(cfg)
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert set(results["clients"]) == {"image", "audio", "both", "text"}
    history = [h for h in results["history"] if "train" in h]
    text_skipped = [int(h["train"]["text"]["steps_skipped"]) for h in history]
    assert text_skipped == SKIPPED_BY_ROUND[mode]
    for client in ("image", "audio", "both"):  # they reach every group: never skip
        assert all(h["train"][client]["steps_skipped"] == 0 for h in history)
