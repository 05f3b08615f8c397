"""Tests for the benchmark baselines in rinr_bench/baselines.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rinr_bench import baselines
from rinr_data.codecs.classic import decode_classic, encode_classic
from rinr_data.core.frames import box_mask
from rinr_data.core.metrics import psnr, region_psnr

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "vtest-dev"


def make_image(height: int = 40, width: int = 48, seed: int = 0) -> torch.Tensor:
    """Smooth background with two noisy 'objects' that are costly to code well."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    img = torch.stack(torch.broadcast_tensors(180 * x + 40, 160 * y + 30, 90 * (x + y) + 20))
    img[:, 5:15, 6:18] += torch.randint(-50, 51, (1, 10, 12), generator=g)
    img[:, 24:36, 30:40] += torch.randint(-50, 51, (1, 12, 10), generator=g)
    return img.clamp(0, 255).round().to(torch.uint8)


BOXES = [[6.0, 5.0, 18.0, 15.0], [29.5, 24.2, 40.0, 35.7]]


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return make_image()


def assert_consistent(result, image, boxes, object_target, background_target):
    """The reported PSNRs are those of the composited frame, and both targets hold there."""
    measured = region_psnr(image, result.decoded, boxes)
    assert result.object_psnr == pytest.approx(measured.objects, nan_ok=True)
    assert result.background_psnr == pytest.approx(measured.background, nan_ok=True)
    assert result.full_psnr == pytest.approx(measured.full)
    if boxes:
        assert measured.objects >= object_target
    assert measured.background >= background_target


def test_roi_baseline_meets_both_targets_and_counts_all_bytes(image):
    result = baselines.roi_baseline(image, BOXES, "jpeg", 36.0, 30.0)
    assert result is not None and result.name == "jpeg-roi"
    assert_consistent(result, image, BOXES, 36.0, 30.0)
    d = result.details
    assert d["scale"] in (1.0, 0.5, 0.25)
    assert set(d["qualities"]) == {"background", "objects"}
    assert result.nbytes == d["bytes"]["background"] + d["bytes"]["atlas"] + 8 * len(BOXES)
    # The background choice is really the cheapest scale: recoding it at its quality reproduces its size.
    q = d["qualities"]["background"]
    assert len(encode_classic(image, "jpeg", q, scale=d["scale"])) == d["bytes"]["background"]


def test_roi_baseline_handles_overlapping_boxes_with_webp(image):
    boxes = BOXES + [[10.0, 8.0, 34.0, 30.0]]
    result = baselines.roi_baseline(image, boxes, "webp", 34.0, 28.0)
    assert result is not None
    assert_consistent(result, image, boxes, 34.0, 28.0)


def test_roi_baseline_without_boxes_is_background_only(image):
    result = baselines.roi_baseline(image, [], "jpeg", 40.0, 30.0)
    assert result is not None
    assert "objects" not in result.details["qualities"]
    assert result.nbytes == result.details["bytes"]["background"]
    assert math.isnan(result.object_psnr) and result.background_psnr >= 30.0
    assert_consistent(result, image, [], 40.0, 30.0)


def test_roi_baseline_with_boxes_covering_everything(image):
    boxes = [[0.0, 0.0, 48.0, 20.0], [0.0, 20.0, 48.0, 40.0]]
    result = baselines.roi_baseline(image, boxes, "jpeg", 35.0, 99.0)
    assert result is not None and math.isnan(result.background_psnr)
    assert region_psnr(image, result.decoded, boxes).objects >= 35.0


def test_roi_baseline_unreachable_target_returns_none(image):
    assert baselines.roi_baseline(image, BOXES, "jpeg", 80.0, 20.0) is None
    assert baselines.roi_baseline(image, BOXES, "jpeg", 30.0, 80.0) is None


def test_full_frame_at_psnr_with_and_without_mask(image):
    mask = box_mask(BOXES, 40, 48)
    masked = baselines.full_frame_at_psnr(image, "avif", 33.0, mask=mask)
    assert masked is not None and masked.object_psnr >= 33.0
    assert masked.object_psnr == pytest.approx(psnr(image, masked.decoded, mask))
    plain = baselines.full_frame_at_psnr(image, "jpeg", 33.0)
    assert plain is not None and plain.full_psnr >= 33.0 and math.isnan(plain.object_psnr)
    assert plain.nbytes == len(encode_classic(image, "jpeg", plain.details["qualities"]["frame"]))


def test_full_frame_at_region_psnrs_is_the_cheapest_quality_reaching_both(image):
    found = baselines.full_frame_at_region_psnrs(image, "jpeg", BOXES, 30.0, 34.0)
    assert found is not None and found.object_psnr >= 30.0 and found.background_psnr >= 34.0
    quality = found.details["qualities"]["frame"]
    mask = box_mask(BOXES, 40, 48)
    below = decode_classic(encode_classic(image, "jpeg", quality - 1))
    assert psnr(image, below, mask) < 30.0 or psnr(image, below, ~mask) < 34.0  # one step cheaper misses a target
    # Each region's target alone is met at no higher a quality than both together.
    objects_only = baselines.full_frame_at_psnr(image, "jpeg", 30.0, mask=mask)
    assert objects_only is not None and objects_only.nbytes <= found.nbytes
    assert baselines.full_frame_at_region_psnrs(image, "jpeg", [], 99.0, 30.0).background_psnr >= 30.0
    assert baselines.full_frame_at_region_psnrs(image, "jpeg", BOXES, 30.0, 99.0) is None


def test_shelf_pack_places_cells_without_overlap():
    sizes = [(32, 16), (16, 48), (16, 16), (48, 32), (16, 16)]
    positions, height, width = baselines._shelf_pack(sizes)
    canvas = np.zeros((height, width), dtype=int)
    for (h, w), (y, x) in zip(sizes, positions):
        assert y + h <= height and x + w <= width
        canvas[y : y + h, x : x + w] += 1
    assert canvas.max() == 1
    assert width >= 48 and width % 16 == 0


def test_real_frame_roi_beats_full_frame_at_the_same_object_quality():
    ann = json.loads((DATA / "annotations.json").read_text())
    img_id = next(im["id"] for im in ann["images"] if im["file_name"] == "vtest_0100.png")
    boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in ann["annotations"] if a["image_id"] == img_id)]
    assert boxes
    image = torch.from_numpy(np.array(Image.open(DATA / "images" / "vtest_0100.png").convert("RGB"))).permute(2, 0, 1)
    roi = baselines.roi_baseline(image, boxes, "jpeg", 36.0, 28.0)
    assert roi is not None
    assert_consistent(roi, image, boxes, 36.0, 28.0)
    full = baselines.full_frame_at_psnr(image, "jpeg", 36.0, mask=box_mask(boxes, 288, 384))
    assert full is not None and full.object_psnr >= 36.0
    assert roi.nbytes < full.nbytes
