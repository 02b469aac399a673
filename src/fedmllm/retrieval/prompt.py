"""The fixed template that puts retrieved cases in front of a question.

The retrieved cases go into the sample's question, before the question itself, so the model
family's own prompt template (``USER: <image>\\n{question} ASSISTANT:``) wraps them unchanged
and every collator, method and evaluator sees an ordinary sample. The default template
uses only brackets and a colon, which every tokeniser knows (the tiny model's word-level
tokeniser too, whose vocabulary is fixed by the public split):

    [<case 1 question> : <case 1 answer>] [<case 2 question> : <case 2 answer>] <question>

Cases appear best match first. A wordier template for real models is one option away
(``retrieval.case_template``, ``retrieval.context_template``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from fedmllm.data.schema import Sample
from fedmllm.retrieval.library import Case

CASE_TEMPLATE = "[{question} : {answer}]"
CONTEXT_TEMPLATE = "{cases} {question}"


@dataclass(frozen=True)
class RagTemplate:
    """How retrieved cases and the question make the new question.

    Attributes:
        case_template: One case; ``{question}`` and ``{answer}`` are the case's texts.
        context_template: The whole question; ``{cases}`` (the cases joined by ``separator``)
            and ``{question}`` (the sample's own question).
        separator: Between two cases.
    """

    case_template: str = CASE_TEMPLATE
    context_template: str = CONTEXT_TEMPLATE
    separator: str = " "

    def __post_init__(self) -> None:
        for field, text, needed in (
            ("case_template", self.case_template, ("{question}", "{answer}")),
            ("context_template", self.context_template, ("{cases}", "{question}")),
        ):
            missing = [n for n in needed if n not in text]
            if missing:
                raise ValueError(f"retrieval.{field}={text!r} lacks {missing}; include them")

    def question(self, question: str, cases: Sequence[Case]) -> str:
        """The question with ``cases`` in front (the question alone when there are none)."""
        if not cases:
            return question
        joined = self.separator.join(
            self.case_template.replace("{question}", c.question).replace("{answer}", c.answer)
            for c in cases
        )
        return self.context_template.replace("{cases}", joined).replace("{question}", question)

    def augment(self, sample: Sample, cases: Sequence[Case], scores: Sequence[float]) -> Sample:
        """A copy of ``sample`` whose question carries ``cases``; ``meta["retrieved"]`` names
        them (ids and scores) and ``meta["question_alone"]`` keeps the original question."""
        meta = {
            **sample.meta,
            "question_alone": sample.question,
            "retrieved": [
                {"case_id": c.case_id, "score": round(float(s), 6)}
                for c, s in zip(cases, scores, strict=True)
            ],
        }
        return replace(sample, question=self.question(sample.question, cases), meta=meta)
