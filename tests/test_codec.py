"""Round trips through encode/decode on tiny frames: quality, determinism, grouping, odd inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import smooth_frame
from PIL import Image

import rinr_data as R
from rinr_data import codecs
from rinr_data.core.metrics import region_psnr

CONFIGS = {
    "paper": R.PaperConfig(max_steps=300, eval_every=25, background_psnr=20.0, object_psnr=25.0, pixels_per_step=512),
    "grid": R.GridConfig(max_steps=300, background_psnr=20.0, object_psnr=25.0),
}
FAST = CONFIGS["paper"]


@pytest.fixture(params=sorted(CONFIGS))
def fast(request) -> R.GridConfig | R.PaperConfig:
    """Every codec test runs for every preset."""
    return CONFIGS[request.param]


def test_round_trip_reaches_configured_psnr(tiny_frame, fast):
    boxes = [[4, 3, 14, 12], [18, 10, 30, 22]]
    frame = R.encode_frames([tiny_frame], [boxes], fast)[0]
    decoded = R.decode(frame.blob)
    assert decoded.dtype == torch.uint8 and decoded.shape == (3, 24, 32)
    q = region_psnr(torch.from_numpy(tiny_frame).permute(2, 0, 1), decoded, boxes)
    assert q.objects >= fast.object_psnr
    assert q.background >= fast.background_psnr
    assert q.objects == pytest.approx(frame.object_psnr)


def test_objects_improve_on_background_alone(tiny_frame, fast):
    boxes = [[4, 3, 20, 18]]
    cfg = fast.replace(background_psnr=15.0, object_psnr=30.0, max_steps=400)
    frame = R.encode_frames([tiny_frame], [boxes], cfg)[0]
    assert frame.object_psnr >= 30.0
    assert frame.object_psnr > frame.background_psnr + 5


def test_same_seed_same_bytes_and_other_seed_other_bytes(tiny_frame, fast):
    boxes = [[2, 2, 9, 9]]
    a = R.encode(tiny_frame, boxes, fast)
    b = R.encode(tiny_frame, boxes, fast)
    c = R.encode(tiny_frame, boxes, fast.replace(seed=1))
    assert a == b
    assert a != c


def test_decode_batch_equals_single_decode_exactly(fast):
    frames = [smooth_frame(24, 32, seed=s) for s in range(3)] + [smooth_frame(17, 23, seed=9)]
    boxes = [[[1, 1, 8, 9]], [], [[3, 3, 20, 20], [10, 2, 31, 12], [0, 0, 1, 1]], [[0, 15.5, 3, 17]]]
    blobs = R.encode_batch(frames, boxes, fast)
    batched = R.decode_batch(blobs)
    for blob, img in zip(blobs, batched):
        assert torch.equal(R.decode(blob), img)
    # Group composition must not matter either: decode in another order and grouping.
    for blob, img in zip(blobs[::-1], R.decode_batch(blobs[::-1])):
        assert torch.equal(R.decode(blob), img)


def test_encode_batch_matches_frame_count_and_geometry(fast):
    frames = [smooth_frame(24, 32, seed=1), smooth_frame(31, 19, seed=2)]
    blobs = R.encode_batch(frames, [[[2, 2, 10, 10]], []], fast)
    assert [tuple(R.decode(b).shape) for b in blobs] == [(3, 24, 32), (3, 31, 19)]
    rec = R.unpack_record(blobs[0])
    assert rec.boxes == [(2.0, 2.0, 10.0, 10.0)]
    assert R.unpack_record(blobs[1]).boxes == []


@pytest.mark.parametrize("kind", ["numpy", "pil", "tensor"])
def test_image_input_types_give_identical_records(tiny_frame, kind, fast):
    image = {
        "numpy": tiny_frame,
        "pil": Image.fromarray(tiny_frame),
        "tensor": torch.from_numpy(tiny_frame).permute(2, 0, 1),
    }[kind]
    assert R.encode(image, [[1, 1, 5, 5]], fast) == R.encode(tiny_frame, [[1, 1, 5, 5]], fast)


def test_odd_sizes_border_pixels_and_no_boxes(fast):
    frame = smooth_frame(13, 7, seed=3)
    boxes = [[6, 12, 7, 13], [0, 0, 1, 1], [6.2, 0.5, 6.9, 1.4]]  # 1-pixel boxes at the borders, sub-pixel box
    blob = R.encode(frame, boxes, fast)
    assert R.decode(blob).shape == (3, 13, 7)
    assert R.decode(R.encode(frame, [], fast)).shape == (3, 13, 7)
    assert R.decode(R.encode(frame, None, fast)).shape == (3, 13, 7)


def test_boxes_are_clipped_with_a_warning(tiny_frame, fast):
    with pytest.warns(UserWarning, match="clipped"):
        blob = R.encode(tiny_frame, [[-5, -5, 10, 40]], fast)
    assert R.unpack_record(blob).boxes[0] == (0.0, 0.0, 10.0, 24.0)


@pytest.mark.parametrize(
    "box,match",
    [
        ([5, 5, 5, 9], "zero area"),
        ([8, 5, 4, 9], "inverted"),
        ([40, 2, 50, 9], "zero area"),
        ([1, 2, 3], r"\[N, 4\]"),
        ([1, 2, float("nan"), 4], "NaN"),
    ],
)
def test_bad_boxes_are_errors(tiny_frame, box, match, fast):
    with pytest.raises(ValueError, match=match):
        R.encode(tiny_frame, [box] if len(box) == 4 else box, fast)


def test_bad_images_are_type_errors(fast):
    with pytest.raises(TypeError, match="uint8"):
        R.encode(np.zeros((8, 8, 3), np.float32), [], fast)
    with pytest.raises(TypeError, match="numpy"):
        R.encode("frame.png", [], fast)


def test_config_is_validated():
    with pytest.raises(ValueError, match="valid codecs: grid, paper"):
        codecs.config("nope")
    with pytest.raises(ValueError, match="entropy_coder"):
        R.PaperConfig(entropy_coder="lzma")
    grid = R.GridConfig(object_psnr=30.0).with_grid(box_levels=0)
    assert grid.grid.box_levels == 0 and grid.object_psnr == 30.0 and grid.grid.levels == R.GridConfig().grid.levels
    with pytest.raises(TypeError, match="box_levels"):  # each codec owns its config: no grid fields on the paper's
        codecs.config("paper", box_levels=1)
    with pytest.raises(ValueError, match="box_levels must be in"):
        R.GridConfig().with_grid(box_levels=9)


def test_codec_config_is_deprecated_but_still_builds_each_codecs_config():
    with pytest.warns(DeprecationWarning, match="GridConfig"):
        grid = R.CodecConfig(max_steps=7, pixels_per_step=64)  # a field of the other codec was ignored, as before
    assert grid == R.GridConfig(max_steps=7)
    with pytest.warns(DeprecationWarning):
        assert R.CodecConfig(preset="paper", latent_lr=0.5) == R.PaperConfig()
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="valid presets: grid, paper"):
        R.CodecConfig(preset="nope")


@pytest.mark.parametrize("coder", ["raw", "zstd", "brotli", "ans"])
def test_every_entropy_coder_round_trips_to_the_same_image(tiny_frame, coder):
    ref = R.encode(tiny_frame, [[2, 2, 12, 12]], FAST)
    blob = R.encode(tiny_frame, [[2, 2, 12, 12]], FAST.replace(entropy_coder=coder))
    assert torch.equal(R.decode(blob), R.decode(ref))
    assert R.unpack_record(blob).coder == coder


def test_presets_bring_their_defaults():
    assert R.GridConfig().preset == "grid" and codecs.for_config(R.GridConfig()).name == "grid"
    assert (R.GridConfig().object_psnr, R.GridConfig().background_psnr) == (33.0, 25.0)
    paper = R.PaperConfig()
    assert paper.preset == "paper" and codecs.for_config(paper).name == "paper"
    assert (paper.object_psnr, paper.background_psnr, paper.max_steps, paper.lr) == (35.0, 26.0, 2000, 1e-3)
    assert R.PaperConfig(max_steps=7).max_steps == 7
    assert codecs.config("grid").max_steps == R.GridConfig().max_steps == 1500


def test_paper_object_size_classes():
    cfg = R.PaperConfig()
    assert [(s.width, s.depth) for s in (cfg.object_shape(a) for a in (1000, 1001, 3000, 3001, 10000, 10001))] == [
        (10, 3),
        (15, 3),
        (15, 3),
        (17, 5),
        (17, 5),
        (24, 5),
    ]
    assert (cfg.background.width, cfg.background.depth) == (28, 10)


def test_region_detail_separates_sharp_and_smooth_regions():
    from rinr_data.core.metrics import region_detail

    image = torch.full((3, 20, 30), 0.5)
    image[:, 2:12, 3:13] = (torch.arange(10)[:, None] + torch.arange(10)[None, :]) % 2  # a checkerboard box
    detail = region_detail(image, [[3.0, 2.0, 13.0, 12.0]])
    assert detail.background < 0.1 < detail.objects  # flat outside (only the box's rim), busy inside
    assert detail.ratio == pytest.approx(detail.objects / detail.background) and detail.ratio > 10
    assert math.isnan(region_detail(torch.full((3, 8, 8), 0.5), [[1.0, 1.0, 4.0, 4.0]]).ratio)  # flat background
    assert region_detail(image, []).objects != region_detail(image, []).objects  # no boxes: NaN inside
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        region_detail(image[0], [])


def test_box_mask_covers_every_pixel_a_box_touches():
    from rinr_data.core.frames import box_mask, box_region

    gen = torch.Generator().manual_seed(0)
    h, w = 17, 23
    xy0 = torch.rand(12, 2, generator=gen) * torch.tensor([w, h])
    boxes = torch.cat([xy0, xy0 + 0.3 + torch.rand(12, 2, generator=gen) * 9], dim=1)  # fractional, some past the rim
    expected = torch.zeros(h, w, dtype=torch.bool)
    for box in boxes.tolist():
        r = box_region(box, h, w)
        expected[r.top : r.bottom, r.left : r.right] = True
    assert torch.equal(box_mask(boxes, h, w), expected)
    assert torch.equal(box_mask(boxes.numpy(), h, w), expected)
    assert torch.equal(box_mask(boxes.tolist(), h, w), expected)
    assert box_mask([[1.5, 2.5, 3.2, 4.0]], 6, 6).nonzero().tolist() == [[2, 1], [2, 2], [2, 3], [3, 1], [3, 2], [3, 3]]
    assert not box_mask([], h, w).any() and box_mask(torch.zeros(0, 4), h, w).shape == (h, w)
