"""Detection errors at one operating point: hits, false alarms and misses at a fixed score threshold.

mAP integrates over every score threshold, so it cannot tell a detector that fires on background clutter from one
that misses objects. Counting both at the threshold a deployment would use can, and shows *which* frames fool it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchvision.ops import box_iou

OPERATING_THRESHOLD = 0.3  # default score at which detections count as made (EdgeDetector, reports)


def match_detections(
    boxes: Tensor, scores: Tensor, labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor, iou_threshold: float = 0.5
) -> Tensor:
    """Bool [K]: which detections hit a ground-truth box (greedy by score, one detection per box, same class)."""
    hit = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return hit
    iou = box_iou(boxes.float(), gt_boxes.float())
    iou[labels[:, None] != gt_labels[None, :]] = -1.0
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool, device=boxes.device)
    for i in scores.argsort(descending=True).tolist():
        # COCO's rule: the best still-free box of the same class at or above the IoU threshold.
        candidates = iou[i].masked_fill(taken, -1.0)
        j = int(candidates.argmax())
        if candidates[j] >= iou_threshold:
            hit[i] = True
            taken[j] = True
    return hit


class DetectionErrors(Metric):
    """True positives, false positives and misses at `score_threshold` (IoU >= `iou_threshold`), summed over images.

    `compute()` gives `precision`, `recall` and `fp_per_image` (false alarms per image); inputs are the
    `MeanAveragePrecision` ones: per image a dict of `boxes` (xyxy), `scores`, `labels`, and targets with `boxes`,
    `labels`.
    """

    full_state_update = False
    tp: Tensor
    fp: Tensor
    fn: Tensor
    images: Tensor

    def __init__(self, score_threshold: float = OPERATING_THRESHOLD, iou_threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 < iou_threshold <= 1.0:
            raise ValueError(
                f"score_threshold must be in [0, 1] and iou_threshold in (0, 1], got {score_threshold}, {iou_threshold}"
            )
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        for name in ("tp", "fp", "fn", "images"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        """Count one batch of images."""
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
        for p, t in zip(preds, targets):
            keep = p["scores"] >= self.score_threshold
            gt_boxes = t["boxes"].reshape(-1, 4)
            hit = match_detections(
                p["boxes"][keep].reshape(-1, 4),
                p["scores"][keep],
                p["labels"][keep],
                gt_boxes,
                t["labels"].reshape(-1),
                self.iou_threshold,
            )
            hits = int(hit.sum())
            self.tp += hits
            self.fp += len(hit) - hits
            self.fn += len(gt_boxes) - hits
            self.images += 1

    def compute(self) -> dict[str, Tensor]:
        """precision, recall (1 where nothing was detected / nothing was there) and false positives per image."""
        tp, fp, fn = self.tp.double(), self.fp.double(), self.fn.double()
        one = torch.ones((), dtype=torch.double, device=tp.device)
        return {
            "precision": tp / (tp + fp) if tp + fp > 0 else one,
            "recall": tp / (tp + fn) if tp + fn > 0 else one,
            "fp_per_image": fp / self.images.clamp(min=1),
        }
