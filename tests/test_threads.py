"""``threads=auto``: free cores of this process on a machine with a given load; numbers win."""

from __future__ import annotations

import logging

import pytest

from fedmllm.utils import threads
from fedmllm.utils.threads import choose_threads, resolve_threads


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [
        (2, 0.05, 2),  # a quiet laptop: both cores
        (2, 0.45, 2),  # desktop background is no busy core
        (2, 1.05, 1),  # one process computing flat out (plus our start-up): one core left
        (2, 2.3, 1),  # two heavy processes: everything busy, still one thread
        (2, 7.0, 1),
        (8, 3.0, 5),
        (8, 2.71, 5),  # 0.71 of a core counts as a busy one ...
        (8, 2.69, 6),  # ... 0.69 does not
        (1, 0.0, 1),
        (4, -0.1, 4),  # a nonsensical reading is no load
    ],
)
def test_auto_uses_the_cores_the_load_leaves_free(cores, load, expected):
    choice = choose_threads("auto", cores, load)
    assert choice.threads == expected
    assert f"{cores} core(s) available" in choice.reason and f"using {expected}" in choice.reason


@pytest.mark.parametrize("setting", ["auto", " AUTO ", None])
def test_auto_without_a_load_average_uses_every_core(setting):
    choice = choose_threads(setting, 6, None)
    assert choice.threads == 6 and "load average unknown" in choice.reason


@pytest.mark.parametrize(("setting", "expected"), [(1, 1), (3, 3), ("2", 2), (" 4 ", 4)])
def test_an_explicit_number_wins_whatever_the_load(setting, expected):
    for cores, load in [(2, 0.0), (2, 9.0), (16, None)]:
        choice = choose_threads(setting, cores, load)
        assert choice.threads == expected
        assert "explicitly" in choice.reason
    assert "more than the 2 core(s)" in choose_threads(3, 2, 0.0).reason


@pytest.mark.parametrize("bad", [0, -2, "0", "many", "1.5", 1.5, True, "", [2]])
def test_a_bad_setting_is_refused_naming_threads(bad):
    with pytest.raises(ValueError, match=r"threads must be 'auto' or a positive whole number"):
        choose_threads(bad, 2, 0.0)


def test_resolve_reads_the_machine_once_and_logs_the_choice(monkeypatch, caplog):
    readings = iter([(3, 1.2), (1, 0.0)])
    monkeypatch.setattr(threads, "available_cores", lambda: next(readings)[0])
    monkeypatch.setattr(threads, "load_average", lambda: 1.2)
    threads._machine.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="fedmllm.utils.threads"):
            assert resolve_threads("auto") == 2
            # A later job in the same process (Hydra multirun) keeps the first reading.
            assert resolve_threads("auto") == 2
            assert resolve_threads(1) == 1
    finally:
        threads._machine.cache_clear()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("torch threads: 2 (threads=auto: 3 core(s) available")
    assert "load average 1.20" in lines[0]
    assert lines[2] == "torch threads: 1 (threads=1 given explicitly)"
