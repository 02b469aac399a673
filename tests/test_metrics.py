"""Tests of fedmllm.metrics: hand-worked examples, batch merging, collections, baselines."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics import Metric

from fedmllm.metrics import (
    MAIN_METRIC,
    METRIC_KEYS,
    TASKS,
    Bleu,
    BoxIoU,
    ExactMatch,
    RougeL,
    bleu_from_counts,
    compute_scalars,
    format_box,
    lcs_length,
    majority_answer,
    mean_box,
    most_common_text,
    normalize_answer,
    parse_box,
    task_metrics,
    tokenize,
    trivial_prediction,
    trivial_predictions,
)

# Two report pairs whose n-gram precisions are counted by hand in test_bleu_two_sentence_corpus.
REPORT_PREDS = ["the cat sat on the mat", "there is a small nodule in the left lung ."]
REPORT_TARGETS = ["the cat is on the mat", "there is a nodule in the left lung ."]


# ---------------------------------------------------------------- normalisation, tokeniser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "yes"),
        ("  The   Left Lung ", "left lung"),
        ("an X-ray", "x ray"),
        ("Patient's liver", "patients liver"),
        ("3.5 cm", "3.5 cm"),
        ("liver,spleen", "liver spleen"),
        ("the", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_tokenize_keeps_numbers_and_hyphenated_words_whole() -> None:
    # Prepare
    text = "The lesion, 3.5 cm, is well-defined."
    # Execute
    tokens = tokenize(text)
    words = tokenize(text, punctuation=False)
    # Assert
    assert tokens == ["the", "lesion", ",", "3.5", "cm", ",", "is", "well-defined", "."]
    assert words == ["the", "lesion", "3.5", "cm", "is", "well-defined"]


# ---------------------------------------------------------------- exact match


def test_exact_match_normalised_and_strict() -> None:
    # Prepare: 4 pairs; normalised matches: 1, 2, 3 (articles/case/punct); strict only pair 1.
    preds = ["yes", "The left lung.", " no ", "right"]
    targets = ["yes", "left lung", "No", "left"]
    em, strict = ExactMatch(), ExactMatch(strict=True)
    # Execute
    em.update(preds, targets)
    strict.update(preds, targets)
    # Assert
    assert em.compute().item() == pytest.approx(3 / 4)
    assert strict.compute().item() == pytest.approx(1 / 4)


def test_exact_match_strict_strips_whitespace_only() -> None:
    metric = ExactMatch(strict=True)
    metric.update([" yes\n", "Yes"], ["yes", "yes"])
    assert metric.compute().item() == pytest.approx(0.5)


def test_metrics_reject_a_bare_string_and_length_mismatch() -> None:
    metric = ExactMatch()
    with pytest.raises(TypeError):
        metric.update("yes", "yes")
    with pytest.raises(ValueError, match="2 predictions for 1"):
        metric.update(["a", "b"], ["a"])


# ---------------------------------------------------------------- boxes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[0.12, 0.34, 0.56, 0.78]", (0.12, 0.34, 0.56, 0.78)),
        ("The lesion is at [0 . 1 2, 0.3 4, 0.5,0.6].", (0.12, 0.34, 0.5, 0.6)),
        ("box (0.1,0.2,0.3,0.4)", (0.1, 0.2, 0.3, 0.4)),
        ("2 lesions, first at 0.1, 0.2, 0.3, 0.4", (0.1, 0.2, 0.3, 0.4)),
        ("0.1 0.2 0 . 3 0.4 then more", (0.1, 0.2, 0.3, 0.4)),
        ("[1, 2] then [0.1, 0.2, 0.3, 0.4]", (0.1, 0.2, 0.3, 0.4)),
        ("no lesion", None),
        ("[0.1, 0.2, 0.3]", None),
    ],
)
def test_parse_box(text: str, expected: tuple[float, ...] | None) -> None:
    parsed = parse_box(text)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(expected)


def test_format_box_two_decimals_round_trips() -> None:
    text = format_box((0.126, 0.3, 0.5, 1.0))
    assert text == "[0.13, 0.30, 0.50, 1.00]"
    assert parse_box(text) == pytest.approx((0.13, 0.3, 0.5, 1.0))


def test_box_iou_hand_worked() -> None:
    # Prepare: five predictions against their targets.
    preds = [
        "[0.1, 0.1, 0.5, 0.5]",  # identical: IoU 1
        "[0.0, 0.0, 0.5, 0.5]",  # overlap 0.25^2 = 1/16, union 1/4 + 1/4 - 1/16 = 7/16: IoU 1/7
        "box 0.0, 0.0, 1.5, 0.5",  # clamped to [0, 0, 1, .5]: inter 1/4, union 1/2: IoU 0.5
        "[0.5, 0.5, 0.2, 0.8]",  # x2 <= x1: invalid, IoU 0
        "no lesion",  # unparsable, IoU 0
    ]
    targets = [
        "[0.1, 0.1, 0.5, 0.5]",
        (0.25, 0.25, 0.75, 0.75),
        torch.tensor([0.0, 0.0, 0.5, 0.5]),
        "[0.1, 0.1, 0.5, 0.5]",
        "[0.1, 0.1, 0.5, 0.5]",
    ]
    metric = BoxIoU()
    # Execute
    metric.update(preds, targets)
    result = metric.compute()
    # Assert: mean IoU (1 + 1/7 + 1/2) / 5 = 23/70; hits at IoU >= 0.5 are the 1st and 3rd.
    assert result["iou"].item() == pytest.approx(23 / 70, abs=1e-6)
    assert result["hit50"].item() == pytest.approx(2 / 5)
    assert result["unparsable"].item() == 2


def test_box_iou_rejects_unreadable_target() -> None:
    with pytest.raises(ValueError, match="target"):
        BoxIoU().update(["[0.1, 0.1, 0.5, 0.5]"], ["none"])


# ---------------------------------------------------------------- BLEU


def test_bleu_two_sentence_corpus() -> None:
    # Prepare. Matches / predicted n-grams, counted by hand per order:
    #   pair 1 (6 tokens vs 6): 1g 5/6, 2g 3/5 (the cat, on the, the mat), 3g 1/4, 4g 0/3
    #   pair 2 (10 tokens vs 9): 1g 9/10, 2g 7/9, 3g 5/8, 4g 3/7
    # Corpus: 14/16, 10/14, 6/12, 3/10; lengths 16 >= 15 so no brevity penalty.
    # BLEU = (7/8 * 5/7 * 1/2 * 3/10) ** (1/4) = (3/32) ** (1/4).
    metric = Bleu()
    # Execute
    metric.update(REPORT_PREDS, REPORT_TARGETS)
    # Assert
    assert metric.correct.tolist() == [14, 10, 6, 3]
    assert metric.total.tolist() == [16, 14, 12, 10]
    assert metric.compute().item() == pytest.approx((3 / 32) ** 0.25, rel=1e-6)


def test_bleu_zero_without_smoothing_and_exp_smoothing() -> None:
    # Pair 1 alone has no matching 4-gram: BLEU 0 unsmoothed. sacreBLEU "exp" smoothing gives
    # the first empty order 1 / (2 * 3): (5/6 * 3/5 * 1/4 * 1/6) ** (1/4) = (1/48) ** (1/4).
    plain, smoothed = Bleu(), Bleu(smooth=True)
    plain.update(REPORT_PREDS[:1], REPORT_TARGETS[:1])
    smoothed.update(REPORT_PREDS[:1], REPORT_TARGETS[:1])
    assert plain.compute().item() == 0.0
    assert smoothed.compute().item() == pytest.approx((1 / 48) ** 0.25, rel=1e-6)


def test_bleu_brevity_penalty() -> None:
    # A 7-token prediction that is a contiguous part of a 9-token reference: every precision
    # is 1, so BLEU is the brevity penalty exp(1 - 9/7).
    metric = Bleu()
    metric.update(["a nodule in the left lung ."], ["there is a nodule in the left lung ."])
    assert metric.compute().item() == pytest.approx(math.exp(1 - 9 / 7), rel=1e-6)


def test_bleu_clips_repeated_ngrams() -> None:
    # The BLEU paper's example: "the the the the the the the" vs "the cat is on the mat" has
    # modified unigram precision 2/7; with n_gram=1 and 7 >= 6 tokens BLEU-1 is 2/7.
    metric = Bleu(n_gram=1)
    metric.update(["the the the the the the the"], ["the cat is on the mat"])
    assert metric.compute().item() == pytest.approx(2 / 7, rel=1e-6)


def test_bleu_from_counts_empty_prediction_is_zero() -> None:
    assert bleu_from_counts([0, 0, 0, 0], [0, 0, 0, 0], 0, 5) == 0.0


def test_bleu_agrees_with_torchmetrics_sacrebleu_13a() -> None:
    # Independent implementation: torchmetrics' port of sacreBLEU with the 13a tokeniser.
    sacre = pytest.importorskip("torchmetrics.text").SacreBLEUScore(tokenize="13a", lowercase=True)
    preds = REPORT_PREDS + ["No acute findings. Heart size is normal.", "Mild effusion, left."]
    targets = REPORT_TARGETS + ["No acute findings. Heart size normal.", "Small effusion, left."]
    ours = Bleu()
    ours.update(preds, targets)
    expected = sacre(preds, [[t] for t in targets]).item()
    assert ours.compute().item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- ROUGE-L


def test_lcs_length() -> None:
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4  # the CLRS textbook example
    assert lcs_length(["a", "b"], []) == 0


def test_rouge_l_hand_worked() -> None:
    # Prepare
    #   pair 1: LCS "the cat on the mat" = 5 of 6 and 6: F = 5/6
    #   pair 2: "a nodule in the left lung" (6) vs "there is a nodule in the right lung ." (8 words;
    #           "." dropped): LCS "a nodule in the lung" = 5: P 5/6, R 5/8, F = 5/7
    #   pair 3: reversed order, all words distinct: LCS 1 of 5 and 5: F = 1/5
    preds = ["the cat sat on the mat", "a nodule in the left lung", "lung left the in nodule"]
    targets = [
        "the cat is on the mat",
        "there is a nodule in the right lung .",
        "nodule in the left lung",
    ]
    metric = RougeL()
    # Execute
    metric.update(preds, targets)
    # Assert
    assert metric.compute().item() == pytest.approx((5 / 6 + 5 / 7 + 1 / 5) / 3, rel=1e-6)


def test_rouge_l_empty_sides_score_zero() -> None:
    metric = RougeL()
    metric.update(["", "yes"], ["yes", "..."])
    assert metric.compute().item() == 0.0


def test_rouge_l_agrees_with_torchmetrics_rouge() -> None:
    # Independent implementation: torchmetrics' port of rouge-score (no stemming).
    rouge = pytest.importorskip("torchmetrics.text").ROUGEScore(rouge_keys="rougeL")
    preds = REPORT_PREDS + ["No acute findings. Heart size is normal."]
    targets = REPORT_TARGETS + ["Heart size normal; no acute findings."]
    ours = RougeL()
    ours.update(preds, targets)
    expected = rouge(preds, targets)["rougeL_fmeasure"].item()
    assert ours.compute().item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- batch merging


def _box_targets() -> tuple[list[str], list[str]]:
    preds = ["[0.1, 0.1, 0.5, 0.5]", "[0.0, 0.0, 0.5, 0.5]", "nothing", "[0.2, 0.2, 0.6, 0.6]"]
    targets = ["[0.1, 0.1, 0.5, 0.5]", "[0.25, 0.25, 0.75, 0.75]", "[0, 0, 1, 1]", "[0, 0, 1, 1]"]
    return preds, targets


def _cases() -> list[tuple[type[Metric], list[str], list[str]]]:
    vqa_preds = ["yes", "The left lung.", "no", "right"]
    vqa_targets = ["yes", "left lung", "No", "left"]
    return [
        (ExactMatch, vqa_preds, vqa_targets),
        (Bleu, REPORT_PREDS * 2, REPORT_TARGETS[::-1] + REPORT_TARGETS),
        (RougeL, REPORT_PREDS * 2, REPORT_TARGETS[::-1] + REPORT_TARGETS),
        (BoxIoU, *_box_targets()),
    ]


def _as_dict(result: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, float]:
    if isinstance(result, dict):
        return {k: float(v) for k, v in result.items()}
    return {"value": float(result)}


@pytest.mark.parametrize(("metric_cls", "preds", "targets"), _cases())
def test_two_batches_equal_one_batch(
    metric_cls: type[Metric], preds: list[str], targets: list[str]
) -> None:
    # Prepare
    whole, split, merged, other = metric_cls(), metric_cls(), metric_cls(), metric_cls()
    # Execute: one batch; two batches; two instances merged (what a distributed sum does).
    whole.update(preds, targets)
    split.update(preds[:1], targets[:1])
    split.update(preds[1:], targets[1:])
    merged.update(preds[:3], targets[:3])
    other.update(preds[3:], targets[3:])
    merged.merge_state(other)
    # Assert
    expected = _as_dict(whole.compute())
    assert _as_dict(split.compute()) == pytest.approx(expected)
    assert _as_dict(merged.compute()) == pytest.approx(expected)


# ---------------------------------------------------------------- collections


def test_task_metrics_keys_and_values() -> None:
    # Prepare
    vqa, report, detection = (task_metrics(t) for t in ("vqa", "report", "detection"))
    # Execute
    vqa.update(["yes", "The left lung."], ["yes", "left lung"])
    report.update(REPORT_PREDS, REPORT_TARGETS)
    detection.update(["[0.1, 0.1, 0.5, 0.5]", "none"], ["[0.1, 0.1, 0.5, 0.5]", "[0, 0, 1, 1]"])
    # Assert. Without answer types, "yes" is closed (a yes/no reference) and "left lung" open.
    # token_acc: "yes" 1 of 1; "the left lung ." vs "left lung" 0 positional matches of 4.
    assert compute_scalars(vqa) == pytest.approx(
        {
            "em": 1.0,
            "em_strict": 0.5,
            "closed_acc": 1.0,
            "closed_f1": 1.0,  # only "yes" occurred: its F1 is 1, "no" is left out
            "n_closed": 1,
            "open_recall": 1.0,
            "n_open": 1,
            "token_acc": 1 / 5,
        }
    )
    scores = compute_scalars(report)
    assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL"}
    # Counts of test_bleu_two_sentence_corpus: BLEU-1 = 14/16, BLEU-2 = sqrt(14/16 * 10/14).
    assert scores["bleu1"] == pytest.approx(14 / 16, rel=1e-6)
    assert scores["bleu2"] == pytest.approx((14 / 16 * 10 / 14) ** 0.5, rel=1e-6)
    assert scores["bleu4"] == pytest.approx((3 / 32) ** 0.25, rel=1e-6)
    assert compute_scalars(detection) == pytest.approx({"iou": 0.5, "hit50": 0.5, "unparsable": 1})
    assert all(isinstance(v, float) for v in compute_scalars(detection).values())


def test_collection_keeps_states_apart_when_first_batch_agrees() -> None:
    # After a first batch where em and em_strict agree, a shared compute group would make the
    # strict metric copy the normalised one. Expected: em 2/2, em_strict 1/2.
    collection = task_metrics("vqa")
    collection.update(["yes"], ["yes"])
    collection.update(["Yes."], ["yes"])
    scores = compute_scalars(collection)
    assert {k: scores[k] for k in ("em", "em_strict")} == pytest.approx(
        {"em": 1.0, "em_strict": 0.5}
    )


def test_main_metric_and_keys_cover_every_task() -> None:
    for task in TASKS:
        assert MAIN_METRIC[task] in METRIC_KEYS[task]
        collection = task_metrics(task)
        preds = ["[0.1, 0.1, 0.5, 0.5]"] if task == "detection" else ["yes"]
        collection.update(preds, preds)
        assert tuple(compute_scalars(collection)) == METRIC_KEYS[task]


def test_unknown_task_lists_the_tasks() -> None:
    with pytest.raises(ValueError, match="vqa, report, detection"):
        task_metrics("segmentation")


# ---------------------------------------------------------------- baselines


def test_majority_answer_breaks_ties_lexicographically() -> None:
    assert majority_answer(["no", "yes", "yes", "no", "maybe"]) == "no"
    assert majority_answer(["b", "a", "b"]) == "b"
    with pytest.raises(ValueError):
        majority_answer([])


def test_most_common_text() -> None:
    normal = "no acute findings ."
    assert most_common_text([normal, "effusion .", normal]) == normal


def test_mean_box_coordinate_wise() -> None:
    box = mean_box([(0.0, 0.2, 0.4, 0.6), (0.2, 0.4, 0.6, 1.0)])
    assert box == pytest.approx((0.1, 0.3, 0.5, 0.8))


def test_trivial_predictions_per_task() -> None:
    assert trivial_predictions("vqa", ["yes", "no", "yes"], 2) == ["yes", "yes"]
    boxes = ["[0.00, 0.20, 0.40, 0.60]", "[0.20, 0.40, 0.60, 1.00]"]
    assert trivial_prediction("detection", boxes) == "[0.10, 0.30, 0.50, 0.80]"
    assert trivial_prediction("report", ["a .", "b .", "a ."]) == "a ."
    with pytest.raises(ValueError, match="unknown task"):
        trivial_prediction("segmentation", ["x"])
