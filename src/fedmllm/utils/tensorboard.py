"""TensorBoard extras the generic Lightning loggers do not give: histograms from scalar bins."""

from __future__ import annotations

from typing import Any


def log_histograms(logger: Any, logs: dict[str, float], step: int) -> None:
    """Write metrics named ``.../hist/<name>/<bin>`` also as TensorBoard histograms.

    A method's ``local_update`` may return per-bin values that way (MoLE: each expert's share
    of the routed tokens); they stay scalars in every logger and become one histogram per
    client and round (tag ``.../<name>``) where the logger is TensorBoard.
    """
    writer = getattr(logger, "experiment", None)
    if not hasattr(writer, "add_histogram_raw"):
        return
    groups: dict[str, dict[int, float]] = {}
    for key, value in logs.items():
        head, _, tail = key.rpartition("/")
        if "/hist/" in key and tail.isdigit():
            groups.setdefault(head.replace("/hist/", "/"), {})[int(tail)] = float(value)
    for tag, bins in groups.items():
        counts = [bins.get(i, 0.0) for i in range(max(bins) + 1)]
        writer.add_histogram_raw(
            tag,
            min=0,
            max=len(counts) - 1,
            num=sum(counts),
            sum=sum(i * c for i, c in enumerate(counts)),
            sum_squares=sum(i * i * c for i, c in enumerate(counts)),
            bucket_limits=[i + 0.5 for i in range(len(counts))],
            bucket_counts=counts,
            global_step=step,
        )


def flush(logger: Any) -> None:
    """Write a logger's buffered events to disk now (TensorBoard buffers them)."""
    writer = getattr(logger, "experiment", None)
    if hasattr(writer, "flush"):
        writer.flush()
