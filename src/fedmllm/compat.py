"""Which methods and server rules belong together: a small vocabulary and one check.

A method *offers* properties of its updates and *needs* services from the rule; a rule
*requires* properties of the updates it aggregates and *provides* services. A pair fits when
the rule's requirements are among the method's offers and the method's needs among the rule's
services. Both sides declare their words next to their code (``FederatedMethod.offers`` /
``needs``, ``Aggregator.requires`` / ``provides``), so adding a rule or a method means declaring
its words, not editing a table. Plain strings keep this module free of imports: methods and
aggregators may not import each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SHARES = "shares"
"""Updates carry tensors (the method shares something)."""
PRIVATE_ONLY = "private_only"
"""Nothing leaves the client (Standalone)."""
LORA_PAIRS = "lora_pairs"
"""Every shared ``lora_A`` travels with its ``lora_B`` (rules that multiply B·A)."""
PAIRED = "paired"
"""Every shared low-rank factor travels with its partner: a LoRA ``A`` with its ``B``, a VeRA
``d`` with its ``b`` (FedA²'s ridge solve handles both kinds)."""
BASE_WEIGHTS = "base_weights"
"""Each shared pair sits on an adapted linear layer whose frozen weight the method can change
(FedEx-LoRA's residual, FRLoRA's refresh fold into ``<module>.base_layer.weight``)."""
MIXED_RANKS = "mixed_ranks"
"""Clients of different LoRA ranks (a method needs it; a rule provides it)."""
PARTIAL_UPDATES = "partial_updates"
"""Clients send different subsets of the global keys; the rule averages each tensor over the
clients that sent it (modality experts)."""
SCAFFOLD = "scaffold"
"""SCAFFOLD's control variates: the rule broadcasts c, the method sends Δc_k."""
FRLORA = "frlora"
"""FRLoRA: principal-component initialisation (method) with the rule's base refresh."""
FEDLEASE = "fedlease"
"""FedLEASE: warm-up, server clustering and per-cluster experts."""
SUM_ONLY = "sum_only"
"""The rule needs only the clients' weighted sum (FedAvg, server optimisers), so it works under
secure aggregation; robust rules need individual updates and do not provide it."""

DESCRIBE = {
    SHARES: "sends some adapter tensors",
    PRIVATE_ONLY: "sends nothing",
    LORA_PAIRS: "sends every LoRA A with its B",
    PAIRED: "sends every low-rank factor with its partner (LoRA A with B, VeRA d with b)",
    BASE_WEIGHTS: "sends pairs that sit on adapted linear layers (dense base-weight updates)",
    MIXED_RANKS: "combines clients of different LoRA ranks",
    PARTIAL_UPDATES: "averages each tensor over the clients that sent it",
    SCAFFOLD: "exchanges SCAFFOLD control variates",
    FRLORA: "pairs FRLoRA's principal-component initialisation with its base refresh",
    FEDLEASE: "runs FedLEASE's warm-up, clustering and cluster experts",
    SUM_ONLY: "aggregates from the clients' weighted sum alone (secure aggregation)",
}


def mismatch(
    offers: Iterable[str], needs: Iterable[str], requires: Iterable[str], provides: Iterable[str]
) -> tuple[list[str], list[str]]:
    """What a pair lacks: ``(rule requirements not offered, method needs not provided)``."""
    return sorted(set(requires) - set(offers)), sorted(set(needs) - set(provides))


def fitting_rules(
    offers: Iterable[str],
    needs: Iterable[str],
    rules: Mapping[str, tuple[Iterable[str], Iterable[str]]],
) -> list[str]:
    """Names of the rules in ``rules`` (name -> (requires, provides)) that fit the method."""
    return sorted(
        n for n, (req, prov) in rules.items() if mismatch(offers, needs, req, prov) == ([], [])
    )


def refusal(
    method: str,
    rule: str,
    offers: Iterable[str],
    needs: Iterable[str],
    requires: Iterable[str],
    provides: Iterable[str],
    rules: Mapping[str, tuple[Iterable[str], Iterable[str]]],
) -> str | None:
    """One sentence refusing ``method`` with ``rule`` (None when they fit), naming rules that
    fit."""
    unmet, unserved = mismatch(offers, needs, requires, provides)
    if not unmet and not unserved:
        return None
    reasons = [f"aggregator={rule} needs a method that {DESCRIBE.get(w, w)}" for w in unmet]
    reasons += [f"method={method} needs a rule that {DESCRIBE.get(w, w)}" for w in unserved]
    fits = fitting_rules(offers, needs, rules)
    hint = f"use aggregator={' or aggregator='.join(fits)}" if fits else "no rule in configs fits"
    return f"method={method} does not work with aggregator={rule}: {'; '.join(reasons)} ({hint})."
