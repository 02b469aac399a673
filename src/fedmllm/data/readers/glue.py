"""GLUE in its distributed layout: ``SST-2/``, ``RTE/``, ``MNLI/`` folders of TSV files.

- ``sst2``: ``train.tsv``, ``dev.tsv``; columns ``sentence``, ``label`` (0/1 ->
  ``negative``/``positive``).
- ``rte``: ``train.tsv``, ``dev.tsv``; ``sentence1``, ``sentence2``, ``label``
  (``entailment``/``not_entailment``).
- ``mnli``: ``train.tsv``, ``dev_matched.tsv``, ``dev_mismatched.tsv``; ``sentence1``,
  ``sentence2``, ``gold_label`` (``entailment``/``neutral``/``contradiction``).

Every file has a header row; fields are tab-separated and not quoted (GLUE's own files contain
stray quote characters, so quoting is switched off). The ``test`` files carry no labels and are
refused. A pair is stored as ``"<sentence1> </s> <sentence2>"`` in ``Sample.question``
(``fedmllm.models.text_classifier.PAIR_SEP``), the label name as ``Sample.answer``, task
``classification``, modality ``text``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fedmllm.data.readers.common import expect
from fedmllm.data.schema import Sample

PAIR_SEP = " </s> "
"""Between the two sentences of a pair inside ``Sample.question`` (the classifier splits on it)."""
SST2_LABELS = {"0": "negative", "1": "positive"}
GLUE_TASKS = {
    "sst2": ("sentence", None, "label"),
    "rte": ("sentence1", "sentence2", "label"),
    "mnli": ("sentence1", "sentence2", "gold_label"),
}
GLUE_LABELS = {
    "sst2": ["negative", "positive"],
    "rte": ["entailment", "not_entailment"],
    "mnli": ["entailment", "neutral", "contradiction"],
}


def read_glue(root: Path, split: str, task: str = "sst2") -> list[Sample]:
    """The labelled records of ``<root>/<split>.tsv`` for a GLUE task.

    Args:
        root: The task's folder (``.../SST-2``).
        split: File stem: ``train``, ``dev`` (MNLI: ``dev_matched``, ``dev_mismatched``).
        task: ``sst2``, ``rte`` or ``mnli``.

    Raises:
        ValueError: An unknown task, a missing column (e.g. the unlabelled ``test`` split), a
            label outside the task's, or an empty sentence; each names the file and line.
        DatasetNotFoundError: The file is missing.
    """
    if task not in GLUE_TASKS:
        raise ValueError(f"glue reader: task must be one of {sorted(GLUE_TASKS)}, got {task!r}")
    path = expect(Path(root) / f"{split}.tsv", "glue", f"{task} {split} file")
    first, second, label_col = GLUE_TASKS[task]
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in (first, second, label_col) if c and c not in (rows.fieldnames or [])]
        if missing:
            raise ValueError(
                f"glue {task}: {path} has no column(s) {missing} (columns: {rows.fieldnames}); "
                "the test split has no labels, use train or dev"
            )
        out = []
        for line, row in enumerate(rows, start=2):
            label = row[label_col].strip()
            label = SST2_LABELS.get(label, label) if task == "sst2" else label
            if label not in GLUE_LABELS[task]:
                raise ValueError(f"glue {task}: {path} line {line}: unknown label {label!r}")
            text = (row[first] or "").strip()
            if second:
                text = f"{text}{PAIR_SEP}{(row[second] or '').strip()}"
            if not text.replace(PAIR_SEP.strip(), "").strip():
                raise ValueError(f"glue {task}: {path} line {line}: empty sentence")
            meta = {"source": f"glue/{task}", "split": split, "record_file": str(path)}
            meta["id"] = f"glue/{task}/{split}/{row.get('index', line - 2)}"
            out.append(Sample(None, "text", text, label, "classification", meta=meta))
    return out
