"""Progress of a long training loop: a rich bar for the terminal, log lines for the run's log.

The bar only draws on a terminal; the log lines reach every handler of the ``logging`` tree,
so a run's ``train.log`` (Hydra's file handler) says what pretraining is doing even when
nobody watches: its start, every tenth of the steps with loss, elapsed time and ETA, every
step slower than :data:`SLOW_STEP_S` (a busy machine), and its end.
"""

from __future__ import annotations

import datetime
import logging
import math
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# A step slower than this is logged as a warning: on the lab's models a step takes well under
# a second unless the machine is oversubscribed (see the ``threads`` setting).
SLOW_STEP_S = 10.0


def progress_bar(label: str, enabled: bool) -> Progress:
    """A rich bar with the step count, the running loss and the elapsed time."""
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


def clock(seconds: float) -> str:
    """``h:mm:ss`` of a duration."""
    return str(datetime.timedelta(seconds=round(seconds)))


class ProgressLog:
    """Log lines about a loop of ``total`` steps: about every ``fraction`` of them, and slow steps.

    Times are wall-clock seconds since :meth:`begin`.

    Args:
        logger: Where the lines go.
        label: The loop's name, first word of every line.
        total: Steps the loop will run.
        fraction: Share of the steps between two progress lines.
    """

    def __init__(
        self, logger: logging.Logger, label: str, total: int, fraction: float = 0.1
    ) -> None:
        self.log, self.label, self.total = logger, label, total
        self.every = max(1, math.ceil(total * fraction))
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since :meth:`begin`."""
        return time.perf_counter() - self.start

    def begin(self, what: str) -> None:
        """The opening line (``what``: the loop's settings); starts the clock."""
        self.start = time.perf_counter()
        self.log.info("%s: start, %d steps, %s", self.label, self.total, what)

    def step(self, done: int, loss: float, seconds: float) -> None:
        """Account step ``done`` (1-based) that took ``seconds``; ``loss`` is the running loss."""
        if seconds > SLOW_STEP_S:
            self.log.warning(
                "%s: step %d took %.1f s (over %.0f s): is the machine busy? "
                "(fewer torch threads: the `threads` setting)",
                self.label,
                done,
                seconds,
                SLOW_STEP_S,
            )
        if done % self.every == 0 and done < self.total:
            elapsed = self.elapsed
            self.log.info(
                "%s: step %d/%d (%d %%), loss %.4f, elapsed %s, ETA %s",
                self.label,
                done,
                self.total,
                100 * done // self.total,
                loss,
                clock(elapsed),
                clock(elapsed / done * (self.total - done)),
            )

    def end(self, loss: float) -> None:
        """The closing line: steps, final loss, elapsed time and time per step."""
        elapsed = self.elapsed
        self.log.info(
            "%s: done, %d steps in %s (%.3f s/step), final loss %.4f",
            self.label,
            self.total,
            clock(elapsed),
            elapsed / max(1, self.total),
            loss,
        )
