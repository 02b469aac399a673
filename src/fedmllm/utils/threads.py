"""How many torch threads a run uses: ``threads=auto`` (the default) or an explicit count.

On a small shared machine, torch threads that spin against other processes' work make a run
many times slower than one thread would (two threads each of two processes on two cores: about
15x), so ``auto`` takes the cores this process may run on and leaves out those the load average
says are busy. :func:`choose_threads` is the pure decision; :func:`resolve_threads` reads the
machine and logs the choice with its reason. A leaf module: it imports nothing of fedmllm.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

AUTO = "auto"
# A core counts as busy once the load average accounts for this much of it: a process computing
# flat out shows as about 1.0 (1.1 with this run's own start-up), desktop background as 0.1-0.5.
BUSY_FROM = 0.7


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and why it was chosen (for the run's log)."""

    threads: int
    reason: str


def _explicit_count(setting: int | str) -> int | None:
    """The positive whole number ``setting`` spells, or None."""
    if isinstance(setting, bool):  # True is an int to Python, not a thread count to a user
        return None
    if isinstance(setting, int):
        return setting if setting > 0 else None
    text = setting.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def choose_threads(setting: int | str | None, cores: int, load: float | None) -> ThreadChoice:
    """The torch thread count for ``setting`` on a machine with ``cores`` and ``load``.

    ``auto`` (or None) counts one busy core per unit of load average, a fraction of at least
    :data:`BUSY_FROM` counting as a whole one (background noise of 0.4 is no busy core, two
    processes computing are two), and uses the free cores, at least one. An explicit number is
    used as given.

    Args:
        setting: ``"auto"``, None (the same) or a positive whole number (an int, or digits as
            a command line gives them).
        cores: Cores this process may run on (``os.sched_getaffinity``), at least 1.
        load: One-minute load average of the machine; None where it cannot be read.

    Returns:
        The count and a sentence saying why.

    Raises:
        ValueError: For any other ``setting``, naming ``threads``.
    """
    if setting is None or (isinstance(setting, str) and setting.strip().lower() == AUTO):
        return _auto(max(1, int(cores)), load)
    count = _explicit_count(setting) if isinstance(setting, int | str) else None
    if count is None:
        raise ValueError(f"threads must be 'auto' or a positive whole number, got {setting!r}")
    note = f", more than the {cores} core(s) available" if count > cores else ""
    return ThreadChoice(count, f"threads={count} given explicitly{note}")


def _auto(cores: int, load: float | None) -> ThreadChoice:
    where = f"threads=auto: {cores} core(s) available to this process"
    if load is None or not math.isfinite(load):
        return ThreadChoice(cores, f"{where}, load average unknown: using all")
    busy = math.floor(max(0.0, load) + 1.0 - BUSY_FROM)
    free = cores - busy
    threads = max(1, free)
    return ThreadChoice(
        threads,
        f"{where}, 1-minute load average {load:.2f} = {busy} busy, {max(0, free)} free: "
        f"using {threads}",
    )


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; all cores where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The machine's one-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@functools.cache
def _machine() -> tuple[int, float | None]:
    """Cores and load, read once per process: later jobs of a Hydra multirun run in this same
    process and would otherwise count its own earlier training as load from others."""
    return available_cores(), load_average()


def resolve_threads(setting: int | str | None) -> int:
    """The thread count for ``setting`` on this machine; logs it and the reason.

    Args:
        setting: The config's ``threads`` (``auto`` or a positive whole number).

    Returns:
        The count to pass to ``torch.set_num_threads``.
    """
    choice = choose_threads(setting, *_machine())
    log.info("torch threads: %d (%s)", choice.threads, choice.reason)
    return choice.threads
