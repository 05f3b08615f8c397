"""Operating-point detection errors: hits, false alarms and misses at one score threshold."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.detection_metrics import DetectionErrors, match_detections


def _pred(boxes, scores, labels=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return {
        "boxes": boxes,
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels if labels is not None else [0] * len(boxes)),
    }


def _target(boxes, labels=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return {"boxes": boxes, "labels": torch.tensor(labels if labels is not None else [0] * len(boxes))}


def test_counts_hits_false_alarms_and_misses_by_hand() -> None:
    """Image 1: a hit, a duplicate of it (a false alarm: one detection per box), a low-score hit below the threshold
    (ignored, so its box is missed), a detection of the wrong class. Image 2: nothing there, one false alarm."""
    errors = DetectionErrors(score_threshold=0.3)
    gt = _target([[0, 0, 10, 20], [40, 40, 50, 60]], [0, 0])
    pred = _pred(
        [[0, 0, 10, 20], [1, 0, 10, 20], [40, 40, 50, 60], [40, 40, 50, 60]], [0.9, 0.8, 0.2, 0.7], [0, 0, 0, 1]
    )
    errors.update([pred, _pred([[5, 5, 15, 15]], [0.5])], [gt, _target([])])
    result = errors.compute()
    # tp 1; fp: duplicate, wrong class, empty-image alarm = 3; fn: the second box = 1; 2 images.
    assert result["precision"].item() == pytest.approx(1 / 4)
    assert result["recall"].item() == pytest.approx(1 / 2)
    assert result["fp_per_image"].item() == pytest.approx(3 / 2)


def test_greedy_matching_takes_the_higher_score_first() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 10.0]])
    hit = match_detections(boxes, torch.tensor([0.9, 0.4]), torch.tensor([0, 0]), gt, torch.tensor([0]))
    assert hit.tolist() == [True, False]  # the exact box scores lower, so it is the duplicate


def test_iou_threshold_decides_a_hit() -> None:
    gt = _target([[0, 0, 10, 10]])
    loose = _pred([[0, 0, 10, 4]], [0.9])  # IoU 0.4
    strict, lenient = DetectionErrors(iou_threshold=0.5), DetectionErrors(iou_threshold=0.3)
    strict.update([loose], [gt])
    lenient.update([loose], [gt])
    assert strict.compute()["recall"].item() == 0.0 and lenient.compute()["recall"].item() == 1.0


def test_nothing_detected_nothing_there() -> None:
    errors = DetectionErrors()
    errors.update([_pred([], [])], [_target([])])
    result = errors.compute()
    assert result["precision"].item() == 1.0 and result["recall"].item() == 1.0
    assert result["fp_per_image"].item() == 0.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="score_threshold"):
        DetectionErrors(score_threshold=1.5)
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        DetectionErrors().update([_pred([], []), _pred([], [])], [_target([])])
