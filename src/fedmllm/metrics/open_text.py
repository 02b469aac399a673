"""BLEU and ROUGE-L over the open-ended VQA questions only (LightFED's open-question scores).

Closed-ended samples (by :func:`fedmllm.metrics.vqa.is_closed`: the sample's ``answer_type``,
else a yes/no reference) are left out; the open ones are scored exactly as
:class:`~fedmllm.metrics.bleu.Bleu` (corpus BLEU-1..4) and
:class:`~fedmllm.metrics.rouge.Rouge` (mean sentence ROUGE-L F) score a corpus.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmllm.metrics._inputs import Target, check_answer_types, check_pairs, references
from fedmllm.metrics.bleu import Bleu
from fedmllm.metrics.normalize import tokenize
from fedmllm.metrics.rouge import rouge_f
from fedmllm.metrics.vqa import is_closed

KEYS = ("open_bleu1", "open_bleu2", "open_bleu3", "open_bleu4", "open_rougeL", "n_open_text")


class OpenText(Bleu):
    """Corpus BLEU-1..4 and mean ROUGE-L F of the open-ended samples.

    ``compute()`` returns ``open_bleu1`` .. ``open_bleu4``, ``open_rougeL`` (0 when no open
    sample was seen) and ``n_open_text``. Per sample: those scores, None for closed samples.
    """

    rouge_sum: torch.Tensor
    n_open: torch.Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(n_gram=4, all_orders=True, **kwargs)
        self.add_sums(rouge_sum=0.0, n_open=0)

    def update(  # type: ignore[override]
        self,
        preds: Sequence[str],
        targets: Sequence[Target],
        answer_types: Sequence[str | None] | None = None,
    ) -> None:
        """Add the open-ended samples of one batch."""
        check_pairs(preds, targets)
        types = check_answer_types(answer_types, len(preds))
        keep = [not is_closed(t, references(g)) for g, t in zip(targets, types, strict=True)]
        sel_p = [p for p, k in zip(preds, keep, strict=True) if k]
        sel_t = [g for g, k in zip(targets, keep, strict=True) if k]
        scores: dict[str, list[float | None]] = {k: [None] * len(preds) for k in KEYS[:5]}
        if sel_p:
            super().update(sel_p, sel_t)
            bleu = self.last_sample_scores
            assert isinstance(bleu, dict)
            rouges = [
                max(
                    rouge_f(
                        tokenize(p, punctuation=False), tokenize(r, punctuation=False), "rougeL"
                    )
                    for r in references(g)
                )
                for p, g in zip(sel_p, sel_t, strict=True)
            ]
            self.rouge_sum += float(sum(rouges))
            self.n_open += len(sel_p)
            rows = [i for i, k in enumerate(keep) if k]
            for j, i in enumerate(rows):
                for n in range(1, 5):
                    scores[f"open_bleu{n}"][i] = bleu[f"bleu{n}"][j]
                scores["open_rougeL"][i] = rouges[j]
        self.last_sample_scores = scores

    def compute(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Open-ended BLEU-1..4, ROUGE-L and the number of open samples scored."""
        bleu = super().compute()
        assert isinstance(bleu, dict)
        out = {f"open_{k}": v for k, v in bleu.items()}
        out["open_rougeL"] = (self.rouge_sum / self.n_open.clamp_min(1)).float()
        out["n_open_text"] = self.n_open.clone()
        return out
