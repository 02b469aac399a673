"""Pretraining tells the run's log what it does: start, every 10 %, slow steps, end.

The lines go through ``logging`` (not the rich bar, which draws only on a terminal), so they
reach Hydra's ``train.log`` handler on the root logger; ``caplog`` listens there too.
"""

from __future__ import annotations

import logging
import re

from multimodal_helpers import TINY, WORDS, make_samples

import fedmllm.models.progress as progress
from fedmllm.models import build_tiny_vlm
from fedmllm.models.progress import ProgressLog

LOGGER = "fedmllm.models.pretrain"


def _pretrain(tmp_path, steps: int) -> None:
    public = make_samples("ct", 6) + make_samples("ct", 2, image=False)
    pre = {"steps": steps, "batch_size": 2, "warmup": 1}
    build_tiny_vlm(tmp_path, public, WORDS, config=TINY, pretrain=pre, progress=False)


def test_pretraining_logs_start_tenths_and_end(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        _pretrain(tmp_path, steps=20)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert lines[0].startswith("pretraining: start, 20 steps, batch 2, 8 samples")
    assert "torch thread(s)" in lines[0]
    progress_lines = lines[1:-1]
    # Every 10 % of 20 steps = every 2 steps, the last one reported by the end line.
    done = [int(re.search(r"step (\d+)/20", line).group(1)) for line in progress_lines]
    assert done == [2, 4, 6, 8, 10, 12, 14, 16, 18]
    for line in progress_lines:
        assert re.search(
            r"\(\d+ %\), loss \d+\.\d{4}, elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d$", line
        )
    assert "(50 %)" in progress_lines[4]
    assert re.match(r"pretraining: done, 20 steps in \d:\d\d:\d\d \(\d+\.\d{3} s/step\)", lines[-1])
    assert re.search(r"final loss \d+\.\d{4}$", lines[-1])
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == LOGGER)
    # Nothing in between stops the lines on their way to the root logger's file handler.
    assert logging.getLogger(LOGGER).propagate and logging.getLogger("fedmllm").propagate


def test_a_slow_step_is_a_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(progress, "SLOW_STEP_S", 0.0)  # every real step is "slow" now
    with caplog.at_level(logging.INFO):
        _pretrain(tmp_path, steps=3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert re.match(
        r"pretraining: step 1 took \d+\.\d s \(over 0 s\): is the machine busy", warnings[0]
    )
    assert "`threads`" in warnings[0]


def test_progress_log_reports_about_every_tenth_and_slow_steps_only(caplog):
    report = ProgressLog(logging.getLogger("test.progress"), "loop", total=7)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        report.begin("settings")
        for step in range(1, 8):
            report.step(step, loss=1.0 / step, seconds=12.0 if step == 3 else 0.01)
        report.end(0.5)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert info[0] == "loop: start, 7 steps, settings"
    # A tenth of 7 steps rounds up to one step; step 7 is reported by the end line.
    assert [int(re.search(r"step (\d)/7", m).group(1)) for m in info[1:-1]] == [1, 2, 3, 4, 5, 6]
    assert "loss 0.5000" in info[2] and "(28 %)" in info[2]
    assert len(warnings) == 1 and warnings[0].startswith("loop: step 3 took 12.0 s (over 10 s)")
    assert info[-1].startswith("loop: done, 7 steps in 0:00:00") and info[-1].endswith("0.5000")
