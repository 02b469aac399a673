"""Clinical efficacy of generated reports: F1 of the stated findings against the reference's.

The analogue of the CheXpert-label F1 of report-generation papers, for benchmarks whose
reports are written from scene records (``mrg_synth``): both the generated report and the
reference are read by :func:`fedmllm.metrics.findings.extract_findings`, which recovers the
reference's scene record exactly (``tests/test_findings.py`` checks every site style against
the records), so scoring against the reference text is scoring against the scene record.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmllm.metrics._inputs import Target, check_pairs, references
from fedmllm.metrics.base import TextMetric
from fedmllm.metrics.findings import extract_findings, f1, finding_counts, load_lexicon

CLINICAL_KEYS = ("ce_f1", "ce_kind_f1", "ce_count_acc")
_SUMS = ("tp", "fp", "fn", "kind_tp", "kind_fp", "kind_fn", "count_ok")


class ClinicalEfficacy(TextMetric):
    """Micro-averaged clinical scores over a test set, in [0, 1].

    - ``ce_f1``: F1 over the multisets of stated lesions ``(kind, side, half)``;
    - ``ce_kind_f1``: F1 over the per-report presence labels of each lesion kind (the
      CheXpert-style label F1);
    - ``ce_count_acc``: share of reports whose stated lesion count is right.

    With several references, the first one is the record (the others are paraphrases).

    Args:
        lexicon: A lexicon name of ``fedmllm.metrics.findings.LEXICONS`` or ``module:function``.
        **kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    sums: torch.Tensor
    total: torch.Tensor

    def __init__(self, lexicon: str = "mrg_synth", **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.lexicon = load_lexicon(lexicon)
        self.add_sums(sums=torch.zeros(len(_SUMS), dtype=torch.float64), total=0)

    def update(self, preds: Sequence[str], targets: Sequence[Target]) -> None:
        """Add one batch (see the class docstring)."""
        check_pairs(preds, targets)
        batch = torch.zeros(len(_SUMS), dtype=torch.float64)
        per_sample: dict[str, list[float | None]] = {k: [] for k in CLINICAL_KEYS}
        for pred, target in zip(preds, targets, strict=True):
            ref = extract_findings(references(target)[0], self.lexicon)
            counts = finding_counts(extract_findings(pred, self.lexicon), ref)
            batch += torch.tensor([counts[k] for k in _SUMS], dtype=torch.float64)
            per_sample["ce_f1"].append(f1(counts["tp"], counts["fp"], counts["fn"]))
            per_sample["ce_kind_f1"].append(
                f1(counts["kind_tp"], counts["kind_fp"], counts["kind_fn"])
            )
            per_sample["ce_count_acc"].append(float(counts["count_ok"]))
        self.sums += batch.to(self.sums.device)
        self.total += len(preds)
        self.last_sample_scores = per_sample

    def compute(self) -> dict[str, torch.Tensor]:
        """``{ce_f1, ce_kind_f1, ce_count_acc}`` (0 before any update)."""
        s = dict(zip(_SUMS, self.sums.tolist(), strict=True))
        n = int(self.total)
        values = {
            "ce_f1": f1(s["tp"], s["fp"], s["fn"]) if n else 0.0,
            "ce_kind_f1": f1(s["kind_tp"], s["kind_fp"], s["kind_fn"]) if n else 0.0,
            "ce_count_acc": s["count_ok"] / n if n else 0.0,
        }
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
