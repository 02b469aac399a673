"""LLM-as-judge for generated reports, with the prompt of the Fed-MoLE paper (appendix A.2).

The judge reads the generated and the reference report and answers ``Score: <1..5>`` and a
reason. The paper reports the mean score as a percentage from 100 % (poor) to 500 %
(excellent); the metric's ``judge`` value is the mean score itself (1-5), so the usual
``x 100`` of the results tables prints exactly that percentage. A reply without a readable
score, and a request that failed, are counted (``judge_unparsable``, ``judge_failed``) and
left out of the mean — never silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

from fedmllm.metrics._inputs import Target, check_pairs, references
from fedmllm.metrics.base import TextMetric

log = logging.getLogger(__name__)

JUDGE_PROMPT = """\
You are a medical expert evaluating the quality of an automatically generated radiology \
report based on a reference ground-truth report. Your goal is to provide a score from 1 to 5 \
(integer only) and a concise justification based on the following criteria.

1. Clinical Accuracy: Does the generated report correctly identify and describe the key \
findings and pathologies that appear in the ground-truth report? Are any major findings \
missing or hallucinated?

2. Completeness: Does the generated report cover all the important aspects included in the \
ground-truth report?

3. Fluency and Readability: Is the generated report grammatically correct, well-structured, \
and easy to read?

Please follow these steps:

- Read both the Generated Report and the Reference Report.

- Provide a score from 1 (poor) to 5 (excellent) reflecting the overall quality of the \
generated report in comparison to the reference, mainly focusing on clinical accuracy.

- Provide a short explanation (2–4 sentences) justifying your score.

Format your output strictly as follows:
Output format:

Score: <Score>

Reason: <brief explanation>

Here is the input for this evaluation:
Generated Report: {prediction}
Reference Report: {reference}"""
"""The judge's input (Fed-MoLE, appendix A.2); ``{prediction}`` and ``{reference}`` are filled."""

SCORE_RANGE = (1, 5)

# Reasoning models (Qwen3) think first; a score inside the thinking is not the answer.
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
# "Score: 4", "score : 4" (word tokenisers), "**Score:** 4", "Score: 4/5", "SCORE = 4".
_SCORE = re.compile(
    r"\bscore\b[\s*_]*[:：=][\s*_]*\[?\s*([-+]?\d+(?:\.\d+)?)\s*\]?(?:\s*/\s*5\b)?",
    re.IGNORECASE,
)


def judge_prompt(prediction: str, reference: str) -> str:
    """The paper's judge prompt for one generated report and its reference."""
    # str.replace, not str.format: reports may contain braces.
    return JUDGE_PROMPT.replace("{prediction}", prediction.strip()).replace(
        "{reference}", reference.strip()
    )


def parse_judge_score(text: str | None) -> int | None:
    """The judge's score from its reply, or None when it gave no valid one.

    The first ``Score: <number>`` outside any ``<think>`` block counts (case-insensitive;
    Markdown emphasis, ``=``, brackets and a trailing ``/5`` tolerated; an echoed
    ``Score: <Score>`` placeholder holds no number and is passed over). The number must be an
    integer in 1..5 (``4.0`` reads 4); ``4.5``, ``0`` or ``7`` make the reply unparsable, and
    a later ``Score:`` is then not consulted (that would be guessing).

    Args:
        text: The judge's reply (None for a failed request).

    Returns:
        The score, or None.
    """
    if not text:
        return None
    match = _SCORE.search(_THINK.sub(" ", text))
    if match is None:
        return None
    value = float(match.group(1))
    if not value.is_integer() or not SCORE_RANGE[0] <= value <= SCORE_RANGE[1]:
        return None
    return int(value)


class JudgeBackend(Protocol):
    """Something that answers prompts: a local causal LM or an HTTP endpoint."""

    def complete(self, prompts: Sequence[str]) -> list[str | None]:
        """One reply per prompt; None where the request failed."""


class LLMJudge(TextMetric):
    """Mean LLM-judge score (1-5) of generated reports against their references.

    Args:
        backend: A :class:`JudgeBackend`, or its config for
            :func:`~fedmllm.metrics.judge_backends.make_judge_backend`
            (``{"backend": "local", "path": ...}`` or
            ``{"backend": "openai", "base_url": ..., "model": ...}``).
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    With several references, the judge sees the first one (the prompt has one slot).
    ``compute()`` returns ``{"judge": mean score over parsed replies (0 when none parsed),
    "judge_unparsable": replies without a valid score, "judge_failed": failed requests}``.
    Per sample: ``judge`` (None when unparsable or failed). :attr:`last_replies` keeps the
    raw replies of the last batch.
    """

    expensive = True

    score_sum: torch.Tensor
    scored: torch.Tensor
    unparsable: torch.Tensor
    failed: torch.Tensor

    def __init__(self, backend: JudgeBackend | Mapping[str, Any], **kwargs: object) -> None:
        super().__init__(**kwargs)
        if isinstance(backend, Mapping):
            from fedmllm.metrics.judge_backends import make_judge_backend

            backend = make_judge_backend(backend)
        self.backend = backend
        self.last_replies: list[str | None] = []
        self.add_sums(score_sum=0, scored=0, unparsable=0, failed=0)

    def update(self, preds: Sequence[str], targets: Sequence[Target]) -> None:
        """Ask the judge about one batch of reports.

        Args:
            preds: Generated reports.
            targets: Reference report(s), one entry per prediction.
        """
        check_pairs(preds, targets)
        prompts = [judge_prompt(p, references(t)[0]) for p, t in zip(preds, targets, strict=True)]
        replies = list(self.backend.complete(prompts)) if prompts else []
        if len(replies) != len(prompts):
            raise RuntimeError(f"judge returned {len(replies)} replies for {len(prompts)} prompts")
        scores = [parse_judge_score(r) for r in replies]
        failed = sum(r is None for r in replies)
        unparsable = sum(s is None for s in scores) - failed
        if failed or unparsable:
            log.warning("judge: %d unparsable replies, %d failed requests", unparsable, failed)
        self.score_sum += sum(s for s in scores if s is not None)
        self.scored += sum(s is not None for s in scores)
        self.unparsable += unparsable
        self.failed += failed
        self.last_replies = replies
        self.last_sample_scores = {"judge": [None if s is None else float(s) for s in scores]}

    def compute(self) -> dict[str, torch.Tensor]:
        """Mean score and the failure counts since the last reset."""
        return {
            "judge": self.score_sum.double().div(self.scored.clamp_min(1)).float(),
            "judge_unparsable": self.unparsable.clone(),
            "judge_failed": self.failed.clone(),
        }
