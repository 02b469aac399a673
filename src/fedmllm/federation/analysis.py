"""Post-run analyses of a finished federation: what the adapters learned, not how well."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fedmllm.federation.simulator import Simulator
from fedmllm.lora import cross_client_cosine

log = logging.getLogger(__name__)


def path_similarity(
    sim: Simulator, collator: Any, eval_clients: list[Any], analysis: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Cross-client cosine of adapter-path outputs on a fixed probe batch (Fed-MoLE Table 9).

    Each client of the last round is loaded as it was after its local update, before
    aggregation (its own update's shared tensors + its private ones), and the method's
    ``probe_paths`` hook returns its paths' outputs at one layer; None when the method has
    no hook, fewer than two clients trained in the last round, or ``analysis`` turns it off.

    Args:
        sim: The simulator after ``fit``.
        collator: Turns samples into a model batch (the engine's).
        eval_clients: Clients whose first test samples form the probe batch.
        analysis: The run's ``analysis`` config (``path_similarity``, ``probe_per_client``).
    """
    acfg = analysis or {}
    if not (acfg.get("path_similarity", True) and sim.method.probes_paths):
        return None
    if len(sim.last_updates) < 2:
        return None
    per_client = int(acfg.get("probe_per_client", 8))
    samples = [s for cl in eval_clients for s in list(cl.test)[:per_client]]
    if not samples:
        return None
    batch = collator(samples)
    outputs = {}
    try:
        for update in sim.last_updates:
            sim.swap_in(update.client_id, update.state)
            probed = sim.method.probe_paths(batch)
            if probed is None:  # the method has no adapter paths to compare
                return None
            outputs[update.client_id] = probed
    except (ValueError, TypeError) as e:  # an analysis must not cost a finished run its results
        log.warning("path similarity skipped: %s", e)
        return None
    first = next(iter(outputs.values()))
    mask = batch.get("attention_mask")
    if mask is not None and tuple(mask.shape) != tuple(next(iter(first.values())).shape[:-1]):
        mask = None
    paths = {p: cross_client_cosine({k: o[p] for k, o in outputs.items()}, mask) for p in first}
    return {"paths": paths, "clients": sorted(outputs), "probe_samples": len(samples)}
