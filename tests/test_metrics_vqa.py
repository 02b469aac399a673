"""Closed-ended accuracy / macro-F1, open-ended recall and token accuracy, worked by hand."""

from __future__ import annotations

import pytest
from torchmetrics import Metric

from fedmllm.metrics import ClosedEnded, OpenRecall, TokenAccuracy, is_closed, task_metrics


@pytest.mark.parametrize(
    ("reference", "answer_type", "closed"),
    [
        ("Yes", None, True),  # no field: a yes/no reference is closed
        ("left lung", None, False),  # two words is not "closed" (the pitfall)
        ("ct", "closed", True),  # the data set's own field wins ...
        ("yes", "open", False),  # ... in both directions
    ],
)
def test_is_closed_uses_the_answer_type_field_then_yes_no(
    reference: str, answer_type: str | None, closed: bool
) -> None:
    assert is_closed(answer_type, [reference]) is closed


def _closed_batch() -> tuple[list[str], list[str], list[str | None]]:
    preds = ["Yes.", "no", "maybe", "no", "CT", "yes"]
    targets = ["yes", "yes", "no", "no", "ct", "left lung"]
    types = ["closed", "closed", "closed", None, "closed", "open"]
    return preds, targets, types


def test_closed_ended_accuracy_and_macro_f1_hand_worked() -> None:
    # Closed samples: 1-5 (4 by its yes/no reference; 6 is open and ignored).
    #   1 Yes./yes correct, TP yes     2 no/yes wrong: FP no, FN yes
    #   3 maybe/no wrong: pred outside the classes -> FN no only
    #   4 no/no correct, TP no         5 CT/ct correct, class outside yes/no: accuracy only
    # Accuracy 3/5. F1 yes = 2*1/(2+0+1) = 2/3; F1 no = 2*1/(2+1+1) = 1/2; macro 7/12.
    preds, targets, types = _closed_batch()
    metric = ClosedEnded()
    # Execute
    metric.update(preds, targets, answer_types=types)
    result = {k: v.item() for k, v in metric.compute().items()}
    # Assert
    assert result == pytest.approx({"closed_acc": 3 / 5, "closed_f1": 7 / 12, "n_closed": 5})
    assert metric.last_sample_scores == {"closed_acc": [1.0, 0.0, 0.0, 1.0, 1.0, None]}


def test_closed_ended_without_closed_samples_is_zero_with_count_zero() -> None:
    metric = ClosedEnded()
    metric.update(["left"], ["left lung"])
    assert {k: v.item() for k, v in metric.compute().items()} == {
        "closed_acc": 0.0,
        "closed_f1": 0.0,
        "n_closed": 0,
    }


def test_open_recall_hand_worked() -> None:
    # Open samples (the yes/no one is closed and ignored):
    #   "the left lung" / "left lung": 2 of 2 words (articles dropped) -> 1
    #   "lung" / "left lung": 1 of 2 -> 1/2
    #   "" / "liver": 0
    #   "left left" / "left left lung": multiset, both "left" found, "lung" not -> 2/3
    preds = ["the left lung", "lung", "", "yes", "Left, left!"]
    targets = ["left lung", "left lung", "liver", "yes", "left left lung"]
    metric = OpenRecall()
    metric.update(preds, targets)
    result = {k: v.item() for k, v in metric.compute().items()}
    assert result == pytest.approx({"open_recall": (1 + 1 / 2 + 0 + 2 / 3) / 4, "n_open": 4})
    assert metric.last_sample_scores["open_recall"][3] is None


def test_open_recall_takes_the_best_reference() -> None:
    metric = OpenRecall()
    metric.update(["right kidney"], [["left kidney", "right kidney"]], answer_types=["open"])
    assert metric.compute()["open_recall"].item() == pytest.approx(1.0)


def test_token_accuracy_hand_worked() -> None:
    # Positional matches / longer side, summed over the corpus:
    #   "a nodule in the left lung" vs "... right lung": 5 of 6
    #   "no" vs "no ." : 1 of 2 (the missing "." counts)
    #   "" vs "yes": 0 of 1 (empty prediction)
    #   "Lung left" vs "left lung": 0 of 2 (casing ignored, order matters)
    preds = ["a nodule in the left lung", "no", "", "Lung left"]
    targets = ["a nodule in the right lung", "no .", "yes", "left lung"]
    metric = TokenAccuracy()
    metric.update(preds, targets)
    assert metric.compute().item() == pytest.approx(6 / 11)
    assert metric.last_sample_scores == pytest.approx([5 / 6, 1 / 2, 0.0, 0.0])


def test_token_accuracy_several_references_uses_the_best_ratio() -> None:
    # "left lung" vs "lung": 0 of 2; vs "left lung .": 2 of 3 -> the second.
    metric = TokenAccuracy()
    metric.update(["left lung"], [["lung", "left lung ."]])
    assert metric.compute().item() == pytest.approx(2 / 3)


def test_vqa_collection_routes_answer_types_to_the_metrics_that_take_them() -> None:
    preds, targets, types = _closed_batch()
    collection = task_metrics("vqa")
    collection.update(preds, targets, answer_types=types)
    scores = {k: float(v) for k, v in collection.compute().items()}
    assert scores["n_closed"] == 5 and scores["n_open"] == 1
    assert scores["closed_acc"] == pytest.approx(3 / 5)
    # Normalised exact match over all six: 1, 4, 5 -> 3/6.
    assert scores["em"] == pytest.approx(3 / 6)


def test_answer_types_are_checked() -> None:
    with pytest.raises(ValueError, match="'maybe'"):
        ClosedEnded().update(["yes"], ["yes"], answer_types=["maybe"])
    with pytest.raises(ValueError, match="one entry per sample"):
        OpenRecall().update(["yes", "no"], ["yes", "no"], answer_types=["open"])


def _merge_cases() -> list[tuple[type[Metric], list[str], list[str], list[str | None]]]:
    preds, targets, types = _closed_batch()
    return [
        (ClosedEnded, preds, targets, types),
        (OpenRecall, ["the left lung", "lung", "", "yes"], ["left lung"] * 3 + ["yes"], [None] * 4),
    ]


@pytest.mark.parametrize(("cls", "preds", "targets", "types"), _merge_cases())
def test_answer_type_metrics_merge_batches_exactly(cls, preds, targets, types) -> None:
    whole, a, b = cls(), cls(), cls()
    whole.update(preds, targets, answer_types=types)
    a.update(preds[:2], targets[:2], answer_types=types[:2])
    b.update(preds[2:], targets[2:], answer_types=types[2:])
    a.merge_state(b)
    expected = {k: v.item() for k, v in whole.compute().items()}
    assert {k: v.item() for k, v in a.compute().items()} == pytest.approx(expected)


def test_token_accuracy_merges_batches_exactly() -> None:
    preds = ["a nodule in the left lung", "no", "", "Lung left"]
    targets = ["a nodule in the right lung", "no .", "yes", "left lung"]
    whole, a, b = TokenAccuracy(), TokenAccuracy(), TokenAccuracy()
    whole.update(preds, targets)
    a.update(preds[:1], targets[:1])
    b.update(preds[1:], targets[1:])
    a.merge_state(b)
    assert a.compute().item() == pytest.approx(whole.compute().item())
