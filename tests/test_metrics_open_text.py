"""open_text: BLEU and ROUGE-L over the open-ended VQA samples only."""

from __future__ import annotations

import pytest
from torchmetrics.text import ROUGEScore, SacreBLEUScore

from fedmllm.metrics.registry import build_metrics

PREDS = ["yes", "left lung", "two", "no", "a large mass in the right kidney"]
REFS = ["no", "left lung", "three", "no", "large mass in the left kidney"]
TYPES = ["closed", "open", "open", None, "open"]  # None + "no": closed by its reference


def test_by_hand_on_two_open_answers():
    m = build_metrics(["open_text"])
    m.update(PREDS[:3], REFS[:3], answer_types=TYPES[:3])
    out = m.compute()
    # open: "left lung"/"left lung", "two"/"three": unigrams 2 of 3, bigrams 1 of 1, equal lengths
    assert float(out["open_bleu1"]) == pytest.approx(2 / 3)
    assert float(out["open_bleu2"]) == pytest.approx((2 / 3 * 1) ** 0.5)
    assert float(out["open_rougeL"]) == pytest.approx(0.5)  # (1 + 0) / 2
    assert int(out["n_open_text"]) == 2


def test_against_torchmetrics_on_the_open_subset():
    m = build_metrics(["open_text"])
    m.update(PREDS, REFS, answer_types=TYPES)
    out = m.compute()
    keep = [1, 2, 4]  # the open samples, picked by hand
    preds, refs = [PREDS[i] for i in keep], [[REFS[i]] for i in keep]
    bleu = SacreBLEUScore(n_gram=1, lowercase=True, tokenize="13a")(preds, refs)
    rouge = ROUGEScore(rouge_keys="rougeL")(preds, [r[0] for r in refs])["rougeL_fmeasure"]
    assert float(out["open_bleu1"]) == pytest.approx(float(bleu), abs=1e-5)
    assert float(out["open_rougeL"]) == pytest.approx(float(rouge), abs=1e-5)
    assert int(out["n_open_text"]) == 3


def test_no_open_sample_scores_zero():
    m = build_metrics(["open_text"])
    m.update(["yes"], ["yes"], answer_types=["closed"])
    out = m.compute()
    assert float(out["open_rougeL"]) == 0.0 and int(out["n_open_text"]) == 0
