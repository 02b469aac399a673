"""Text metrics with several references, ROUGE-1/2, empty predictions, per-sample scores."""

from __future__ import annotations

import math

import pytest
import torch

from fedmllm.metrics import (
    DEFAULT_METRICS,
    METRICS,
    Bleu,
    ExactMatch,
    Rouge,
    RougeL,
    build_metrics,
    compute_scalars,
    metric_keys,
    rouge_n,
    sample_scores,
    task_metrics,
)

# ---------------------------------------------------------------- exact match


def test_exact_match_any_reference_empty_prediction_casing_punctuation() -> None:
    # Prepare: normalised matches: 1 ("Yes" ~ "yes"), 2 (second reference), 4 ("Right." ~
    # "right"); 3 is an empty prediction. Strict (strip only) matches only pair 2.
    preds = ["Yes", "left lung", "", "Right."]
    targets = [["yes", "y"], ["left", "left lung"], "no", ["right side", "right"]]
    em, strict = ExactMatch(), ExactMatch(strict=True)
    # Execute
    em.update(preds, targets)
    strict.update(preds, targets)
    # Assert
    assert em.compute().item() == pytest.approx(3 / 4)
    assert strict.compute().item() == pytest.approx(1 / 4)
    assert em.last_sample_scores == [1.0, 1.0, 0.0, 1.0]


def test_an_empty_reference_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one reference"):
        ExactMatch().update(["yes"], [[]])


# ---------------------------------------------------------------- BLEU


def test_bleu_several_references_hand_worked() -> None:
    # Prediction "the cat is on the mat" (6 tokens) against
    #   r1 "the cat sat on the mat" (6) and r2 "there is a cat on the mat" (7).
    # Clipping uses the larger count of each n-gram in any one reference:
    #   1-grams: the x2 (r1 has 2), cat, is (r2), on, mat -> 6/6
    #   2-grams: the cat, on the, the mat match; cat is, is on do not -> 3/5
    #   3-grams: only "on the mat" -> 1/4
    # Closest reference length is 6 = prediction length: no brevity penalty.
    preds = ["the cat is on the mat"]
    targets = [["the cat sat on the mat", "there is a cat on the mat"]]
    metric = Bleu(n_gram=3, all_orders=True)
    # Execute
    metric.update(preds, targets)
    scores = {k: v.item() for k, v in metric.compute().items()}
    # Assert
    assert scores["bleu1"] == pytest.approx(1.0)
    assert scores["bleu2"] == pytest.approx(math.sqrt(3 / 5), rel=1e-6)
    assert scores["bleu3"] == pytest.approx((3 / 5 * 1 / 4) ** (1 / 3), rel=1e-6)


def test_bleu_several_references_agrees_with_torchmetrics_sacrebleu() -> None:
    sacre = pytest.importorskip("torchmetrics.text").SacreBLEUScore(tokenize="13a", lowercase=True)
    preds = ["the cat is on the mat", "No acute cardiopulmonary process.", "Mild effusion, left."]
    targets = [
        ["the cat sat on the mat", "there is a cat on the mat"],
        ["No acute cardiopulmonary abnormality.", "No acute process in the chest."],
        ["Small left effusion.", "Mild effusion, left side."],
    ]
    ours = Bleu()
    ours.update(preds, targets)
    assert ours.compute().item() == pytest.approx(sacre(preds, targets).item(), rel=1e-5)


def test_bleu_closest_reference_length_ties_go_to_the_shorter() -> None:
    # 4 predicted tokens, references of 3 and 5 tokens: both 1 away; sacreBLEU takes 3, so no
    # brevity penalty (with 5 it would be exp(1 - 5/4)). Every unigram is in r2: BLEU-1 = 1.
    metric = Bleu(n_gram=1)
    metric.update(["a b c d"], [["a b c", "a b c d e"]])
    assert metric.compute().item() == pytest.approx(1.0)


def test_bleu_casing_punctuation_and_too_short_corpus() -> None:
    # "The cat." and "the cat ." tokenise alike (the, cat, .): BLEU-1..3 are 1. A corpus without
    # any 4-gram has BLEU-4 = 0 (sacreBLEU's rule), which BLEU-1..3 make visible.
    metric = Bleu(all_orders=True)
    metric.update(["The cat."], ["the cat ."])
    scores = {k: v.item() for k, v in metric.compute().items()}
    assert scores == pytest.approx({"bleu1": 1.0, "bleu2": 1.0, "bleu3": 1.0, "bleu4": 0.0})


def test_bleu_empty_prediction_scores_zero_and_counts_reference_length() -> None:
    metric = Bleu(n_gram=1)
    metric.update([""], ["a nodule ."])
    assert metric.compute().item() == 0.0
    assert int(metric.pred_len) == 0 and int(metric.target_len) == 3


def test_bleu_per_sample_is_smoothed_sentence_bleu() -> None:
    # Pair 1 of the corpus test: precisions 5/6, 3/5, 1/4, 0/3; "exp" smoothing gives the empty
    # 4-gram order 1 / (2 * 3). No brevity penalty (6 vs 6).
    metric = Bleu()
    metric.update(["the cat sat on the mat"], ["the cat is on the mat"])
    expected = (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert metric.last_sample_scores == pytest.approx([expected], rel=1e-6)


# ---------------------------------------------------------------- ROUGE


def test_rouge_n_hand_worked() -> None:
    # "the cat sat on the mat" vs "the cat is on the mat":
    #   unigrams overlap the x2, cat, on, mat = 5 of 6 and 6 -> F 5/6
    #   bigrams the cat, on the, the mat = 3 of 5 and 5 -> F 3/5
    pred, ref = ["the", "cat", "sat", "on", "the", "mat"], ["the", "cat", "is", "on", "the", "mat"]
    assert rouge_n(pred, ref, 1) == pytest.approx((5 / 6, 5 / 6, 5 / 6))
    assert rouge_n(pred, ref, 2) == pytest.approx((3 / 5, 3 / 5, 3 / 5))
    assert rouge_n(["a"], ["a"], 2) == (0.0, 0.0, 0.0)  # no bigram on either side


def test_rouge_takes_the_best_reference_per_key() -> None:
    # References r1 "the cat is on the mat" and r2 "sat on the mat":
    #   rouge1: r1 5/6; r2 overlap 4, P 4/6, R 1 -> F 0.8.             best 5/6 (r1)
    #   rouge2: r1 3/5; r2 overlap 3 (sat on, on the, the mat), P 3/5, R 1 -> F 3/4. best 3/4 (r2)
    #   rougeL: r1 LCS 5 -> 5/6; r2 LCS 4 -> 0.8.                       best 5/6 (r1)
    metric = Rouge()
    metric.update(["the cat sat on the mat"], [["the cat is on the mat", "sat on the mat"]])
    scores = {k: v.item() for k, v in metric.compute().items()}
    assert scores == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 4, "rougeL": 5 / 6})


def test_rouge_agrees_with_torchmetrics_best_of_references() -> None:
    text = pytest.importorskip("torchmetrics.text")
    reference = text.ROUGEScore(accumulate="best", rouge_keys=("rouge1", "rouge2", "rougeL"))
    preds = ["No acute findings. Heart size is normal.", "mild effusion on the left"]
    targets = [
        ["Heart size normal; no acute findings.", "Normal heart. No acute disease."],
        ["Small left effusion.", "mild effusion left"],
    ]
    ours = Rouge()
    ours.update(preds, targets)
    expected = {k: v.item() for k, v in reference(preds, targets).items()}
    for key in ("rouge1", "rouge2", "rougeL"):
        assert ours.compute()[key].item() == pytest.approx(expected[f"{key}_fmeasure"], rel=1e-5)


def test_rouge_empty_prediction_and_unknown_key() -> None:
    metric = Rouge()
    metric.update([""], ["a nodule"])
    assert all(v.item() == 0.0 for v in metric.compute().values())
    with pytest.raises(ValueError, match="rougeX"):
        Rouge(keys=("rougeX",))


def test_rouge_l_scalar_class_keeps_its_contract() -> None:
    metric = RougeL()
    metric.update(["the cat sat on the mat"], ["the cat is on the mat"])
    assert isinstance(metric.compute(), torch.Tensor)
    assert metric.compute().item() == pytest.approx(5 / 6)
    assert metric.last_sample_scores == pytest.approx([5 / 6])


# ---------------------------------------------------------------- collections by name


def test_sample_scores_one_dict_per_sample_with_compute_keys() -> None:
    # Prepare
    collection = build_metrics(["em", "rouge"])
    # Execute
    collection.update(["yes", "left lung"], ["yes", "right lung"])
    rows = sample_scores(collection, 2)
    # Assert: "left lung" vs "right lung": rouge1 1/2, rouge2 0, rougeL 1/2.
    assert rows[0] == pytest.approx({"em": 1.0, "rouge1": 1.0, "rouge2": 0.0, "rougeL": 1.0})
    assert rows[1] == pytest.approx({"em": 0.0, "rouge1": 0.5, "rouge2": 0.0, "rougeL": 0.5})
    assert set(rows[0]) == set(compute_scalars(collection))


def test_metric_names_are_checked_and_defaults_need_no_model() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        build_metrics(["em", "meteor"])
    with pytest.raises(ValueError, match="repeat"):
        build_metrics(["em", "em"])
    with pytest.raises(ValueError, match="needs an encoder"):
        build_metrics(["bertscore"])
    with pytest.raises(ValueError, match="needs a judge"):
        build_metrics(["judge"])
    with pytest.raises(ValueError, match="main metric 'rougeL'"):
        task_metrics("report", ["bleu"])
    # The default collections run nothing that loads a model or could download one.
    for names in DEFAULT_METRICS.values():
        assert not any(METRICS[n].expensive for n in names)
    assert metric_keys(["rouge", "em"]) == ("em", "rouge1", "rouge2", "rougeL")


def test_metric_options_reach_the_metric() -> None:
    collection = build_metrics(["closed"], {"closed": {"classes": ["left", "right"]}})
    collection.update(["left", "right"], ["left", "left"], answer_types=["closed", "closed"])
    scores = compute_scalars(collection)
    # left: TP 1, FN 1 -> F1 2/3; right: FP 1 -> F1 0; macro 1/3.
    assert scores["closed_f1"] == pytest.approx(1 / 3)
