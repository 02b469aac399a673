"""Per-run peak memory: the process's peak resident set, and resetting it at a run's start.

``Simulator.fit`` reports ``ru_maxrss``, the peak RSS of the whole process. In a Hydra
multirun every job runs in the same process, so without a reset a job's "peak" would include
every earlier job of the sweep. On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets
the high-water mark (``VmHWM``, which ``ru_maxrss`` reads); elsewhere the peak stays
process-wide and the caller records that.
"""

from __future__ import annotations

import resource
from pathlib import Path

CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Reset the peak-RSS high-water mark of this process; ``False`` where that is impossible."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """This process's peak resident set (``ru_maxrss``, KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
