"""IoU between the box in generated text and the target box (detection / grounding)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedmllm.metrics._inputs import check_pairs
from fedmllm.metrics.base import TextMetric
from fedmllm.metrics.box_parse import Box, box_iou, clean_box, parse_box


def _target_box(target: str | Sequence[float] | torch.Tensor) -> Box:
    """Read a target box from text or numbers; a target that cannot be read is a data bug."""
    if isinstance(target, str):
        parsed = parse_box(target)
        if parsed is None:
            raise ValueError(f"cannot parse a box from target text {target!r}")
        target = parsed
    elif isinstance(target, torch.Tensor):
        target = target.tolist()
    if len(target) != 4:
        raise ValueError(f"a target box has 4 coordinates, got {target!r}")
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) for v in target)
    return (x1, y1, x2, y2)


HIT_THRESHOLD = 0.5
"""IoU at or above which a predicted box counts as a hit (the ``hit50`` key)."""


class BoxIoU(TextMetric):
    """Mean IoU of the first box written in each prediction against its target box.

    Coordinates are clamped to [0, 1]. A prediction with no readable box, or whose box is
    empty after clamping (``x2 <= x1`` or ``y2 <= y1``), scores IoU 0 and is counted in
    ``unparsable``, so a model cannot gain by refusing to answer.

    Args:
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    ``compute()`` returns ``{"iou": mean IoU, "hit50": fraction with IoU >= 0.5,
    "unparsable": number of unreadable or empty predictions}`` (means are 0 before any update).
    Per sample: ``iou`` and ``hit50`` (0 for an unreadable prediction).
    """

    iou_sum: torch.Tensor
    hits: torch.Tensor
    unparsable: torch.Tensor
    total: torch.Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_sums(iou_sum=0.0, hits=0, unparsable=0, total=0)

    def update(
        self, preds: Sequence[str], targets: Sequence[str | Sequence[float] | torch.Tensor]
    ) -> None:
        """Score one batch.

        Args:
            preds: Generated texts.
            targets: Target boxes, as text in the same format or as four numbers each.

        Raises:
            ValueError: If a target box cannot be read.
        """
        check_pairs(preds, targets)
        iou_sum, hits, unparsable = 0.0, 0, 0
        per_sample: dict[str, list[float | None]] = {"iou": [], "hit50": []}
        for pred, target in zip(preds, targets, strict=True):
            gt = _target_box(target)
            parsed = parse_box(pred)
            box = clean_box(parsed) if parsed is not None else None
            iou = 0.0 if box is None else box_iou(box, gt)
            unparsable += int(box is None)
            iou_sum += iou
            hits += int(iou >= HIT_THRESHOLD)
            per_sample["iou"].append(iou)
            per_sample["hit50"].append(float(iou >= HIT_THRESHOLD))
        self.iou_sum += iou_sum
        self.hits += hits
        self.unparsable += unparsable
        self.total += len(preds)
        self.last_sample_scores = per_sample

    def compute(self) -> dict[str, torch.Tensor]:
        """Mean IoU, hit rate and the count of unreadable predictions since the last reset."""
        n = self.total.clamp_min(1)
        return {
            "iou": (self.iou_sum / n).float(),
            "hit50": self.hits.float() / n,
            "unparsable": self.unparsable.clone(),
        }
