"""The parts of FedMRG that are pure tensor code: loss, compression, head, prompt tokens.

- :func:`client_aware_contrastive`: the encoder loss (docs/methods.md, "FedMRG", states it);
- :func:`truncated_factors`: the best rank-``k`` factors of ``B A`` (low-rank exchange);
- :class:`DiagnosisHead`: the light diagnosis head (plus the diagnosis prototypes it carries);
- :func:`diagnosis_labels`, :func:`diagnosis_text`, :func:`insert_tokens`: diagnosis-driven
  prompts (labels read off a report, the text of a prediction, tokens put before the answer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedmllm.lora.layers import AdapterLayer
from fedmllm.metrics.findings import Lexicon, extract_findings

KINDS = ("cyst", "tumor", "calcification")
MAX_COUNT = 3
NUM_CLASSES = 2 ** len(KINDS)
"""Diagnosis classes of the contrastive loss: which kinds are present (a bitmask)."""
_COUNT_WORDS = ("zero", "one", "two", "three")


def diagnosis_class(kinds: torch.Tensor) -> torch.Tensor:
    """(n,) class index of (n, 3) 0/1 kind-presence rows: ``Σ_j kinds_j 2^j``."""
    powers = 2 ** torch.arange(kinds.shape[1], device=kinds.device)
    return (kinds.long() * powers).sum(1)


def client_aware_contrastive(
    z: torch.Tensor,
    classes: torch.Tensor,
    prototypes: torch.Tensor | None,
    tau: float,
    site_weight: float,
) -> torch.Tensor:
    """FedMRG's client-aware contrastive loss on pooled image features ``z`` (n, d).

    ``z = [g, s]`` splits in halves: ``g`` the generic (diagnosis) part, ``s`` the site part;
    hats are L2-normalised vectors. With ``P(i)`` the other rows of ``i``'s class:

    ``L_sup = mean_{i: P(i)≠∅} −1/|P(i)| Σ_{p∈P(i)} log(exp(ĝ_i·ĝ_p/τ) / Σ_{a≠i} exp(ĝ_i·ĝ_a/τ))``
    (supervised contrastive within the batch);
    ``L_proto = mean_{i: c_{y_i} known} −log(exp(ĝ_i·ĉ_{y_i}/τ) / Σ_{c known} exp(ĝ_i·ĉ_c/τ))``
    (the aggregated prototypes carry the other sites: same diagnosis pulled together across
    sites); ``L_site = mean_i (1 − cos(s_i, s̄))`` with ``s̄`` the batch mean (one site per
    batch: the site part stays common to the site). Returns ``L_sup + L_proto + β·L_site``.
    A prototype is known when its norm is positive.
    """
    half = z.shape[1] // 2
    g, s = F.normalize(z[:, :half], dim=1), z[:, half:]
    n = z.shape[0]
    sims = g @ g.T / tau
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    log_prob = sims - torch.logsumexp(sims.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    pos = (classes[:, None] == classes[None, :]) & ~eye
    has = pos.any(1)
    zero = z.sum() * 0.0
    sup = zero
    if has.any():
        per = (log_prob * pos).sum(1)[has] / pos.sum(1)[has]
        sup = -per.mean()
    proto = zero
    if prototypes is not None:
        known = prototypes.norm(dim=1) > 0
        rows = known[classes]
        if rows.any():
            logits = g @ F.normalize(prototypes, dim=1).T / tau
            logits = logits.masked_fill(~known[None, :], float("-inf"))
            proto = F.cross_entropy(logits[rows], classes[rows])
    site = zero
    if site_weight > 0:
        site = (1 - F.cosine_similarity(s, s.mean(0, keepdim=True), dim=1)).mean()
    return sup + proto + site_weight * site


@torch.no_grad()
def truncated_factors(
    a: torch.Tensor, b: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A', B')`` of rank ``rank`` with ``B' A'`` the best rank-``rank`` approximation of
    ``B A`` (Eckart–Young), from QR of the factors and an SVD of the r×r core (W never formed).
    The singular values are split evenly: ``B' = U √S``, ``A' = √S Vᵀ``."""
    q_b, r_b = torch.linalg.qr(b.double())
    q_a, r_a = torch.linalg.qr(a.double().T)
    u, s, vh = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
    root = s[:rank].sqrt()
    b_new = (q_b @ u[:, :rank]) * root
    a_new = root[:, None] * (vh[:rank] @ q_a.T)
    return a_new.to(a.dtype), b_new.to(b.dtype)


class DiagnosisHead(AdapterLayer):
    """A linear diagnosis head on pooled image features, and the diagnosis prototypes.

    Its outputs are ``len(KINDS)`` presence logits, then ``MAX_COUNT + 1`` count logits.
    ``prototypes`` (``NUM_CLASSES × d/2``, no gradient) are the client's class means of the
    normalised generic feature half, replaced by the server's weighted mean every round.
    ``base_layer`` is a frozen 1×1 placeholder: the marker class wants one, nothing uses it.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(nn.Linear(1, 1, bias=False))
        self.head = nn.Linear(dim, len(KINDS) + MAX_COUNT + 1)
        self.prototypes = nn.Parameter(torch.zeros(NUM_CLASSES, dim // 2), requires_grad=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(n, 7) logits of pooled features ``z`` (n, dim)."""
        return self.head(z)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """BCE over presence plus cross-entropy over the count (labels: (n, 4))."""
        k = len(KINDS)
        presence = F.binary_cross_entropy_with_logits(logits[:, :k], labels[:, :k].float())
        return presence + F.cross_entropy(logits[:, k:], labels[:, k].clamp(max=MAX_COUNT))

    @staticmethod
    def predict(logits: torch.Tensor) -> torch.Tensor:
        """(n, 4) predicted labels: presence at logit > 0, then the count's argmax."""
        k = len(KINDS)
        return torch.cat([(logits[:, :k] > 0).long(), logits[:, k:].argmax(1, keepdim=True)], 1)


def diagnosis_labels(answers: list[str], lexicon: Lexicon) -> torch.Tensor:
    """(n, 4) labels read off the reference reports: kind presence, then the lesion count."""
    rows = []
    for text in answers:
        found = extract_findings(text, lexicon)
        kinds = found.kinds()
        rows.append([int(k in kinds) for k in KINDS] + [min(found.count, MAX_COUNT)])
    return torch.tensor(rows, dtype=torch.long)


def diagnosis_text(labels: torch.Tensor) -> list[str]:
    """The prompt text of each predicted row, e.g. ``"two lesions: cyst, tumor."``."""
    out = []
    for row in labels.tolist():
        kinds = [k for k, on in zip(KINDS, row[: len(KINDS)], strict=True) if on]
        n = row[len(KINDS)]
        noun = "lesion" if n == 1 else "lesions"
        out.append(f"{_COUNT_WORDS[n]} {noun}: {', '.join(kinds)}." if kinds else f"zero {noun}.")
    return out


def insert_tokens(
    batch: dict[str, torch.Tensor], extra: list[list[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """``batch`` with ``extra[i]`` put right before row i's answer (where generation starts).

    A training batch (right-padded, ``labels``) gets the tokens before its first label and
    ``-100`` labels on them; a generation batch (left-padded prompts) gets them at its end.
    Other keys are passed through.
    """
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = batch.get("labels")
    rows_ids, rows_lab = [], []
    for i in range(ids.shape[0]):
        keep = mask[i].bool()
        row, tokens = ids[i][keep], torch.tensor(extra[i], dtype=ids.dtype, device=ids.device)
        if labels is None:
            rows_ids.append(torch.cat([row, tokens]))
            continue
        lab = labels[i][keep]
        start = int((lab != -100).nonzero()[0]) if (lab != -100).any() else len(lab)
        rows_ids.append(torch.cat([row[:start], tokens, row[start:]]))
        ignore = torch.full_like(tokens, -100)
        rows_lab.append(torch.cat([lab[:start], ignore, lab[start:]]))
    width = max(len(r) for r in rows_ids)
    left = labels is None
    out = dict(batch)
    out["input_ids"] = _pad(rows_ids, width, pad_id, left)
    out["attention_mask"] = _pad([torch.ones_like(r) for r in rows_ids], width, 0, left)
    if labels is not None:
        out["labels"] = _pad(rows_lab, width, -100, left)
    return out


def _pad(rows: list[torch.Tensor], width: int, value: int, left: bool) -> torch.Tensor:
    out = rows[0].new_full((len(rows), width), value)
    for i, r in enumerate(rows):
        if left:
            out[i, width - len(r) :] = r
        else:
            out[i, : len(r)] = r
    return out
