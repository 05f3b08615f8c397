"""Tests for the Pillow-backed classic codecs and the quality search."""

from __future__ import annotations

import pytest
import torch

from rinr_data.codecs.classic.pillow import (
    CLASSIC_CODECS,
    cheapest_quality,
    decode_classic,
    encode_classic,
    quality_sweep,
)
from rinr_data.core.metrics import psnr
from rinr_data.errors import FormatError


def make_image(height: int = 40, width: int = 48, seed: int = 0) -> torch.Tensor:
    """Smooth colour gradients with a noisy patch, so quality matters but coding stays cheap."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    img = torch.stack(torch.broadcast_tensors(200 * x + 30 * y, 180 * y + 20, 60 * (x + y) + 60 * x * y))
    img[:, 10:26, 12:30] += torch.randint(-50, 51, (1, 16, 18), generator=g)
    return img.clamp(0, 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return make_image()


@pytest.mark.parametrize("codec", CLASSIC_CODECS)
def test_round_trip_shape_dtype_and_fidelity(image, codec):
    data = encode_classic(image, codec, 90)
    assert isinstance(data, bytes) and len(data) > 0
    out = decode_classic(data)
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert psnr(image, out) > 28


@pytest.mark.parametrize("codec", CLASSIC_CODECS)
def test_encoding_is_deterministic(image, codec):
    assert encode_classic(image, codec, 40) == encode_classic(image, codec, 40)


def test_scale_downscales_before_coding_and_size_upsamples_back(image):
    small = decode_classic(encode_classic(image, "jpeg", 90, scale=1 / 3))
    assert small.shape == (3, 13, 16)  # round(40 / 3), round(48 / 3)
    back = decode_classic(encode_classic(image, "jpeg", 90, scale=0.5), size=(40, 48))
    assert back.shape == image.shape and back.dtype == torch.uint8
    assert decode_classic(encode_classic(image, "jpeg", 90, scale=0.01)).shape == (3, 1, 1)


@pytest.mark.parametrize("codec", CLASSIC_CODECS)
def test_higher_quality_costs_more_bytes_and_gives_higher_psnr(image, codec):
    rows = quality_sweep(image, codec, [10, 50, 90])
    assert [q for q, _, _ in rows] == [10, 50, 90]
    sizes = [n for _, n, _ in rows]
    scores = [p for _, _, p in rows]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert scores == sorted(scores) and scores[-1] - scores[0] > 3


@pytest.mark.parametrize("codec", CLASSIC_CODECS)
def test_cheapest_quality_meets_target_and_next_lower_quality_misses(image, codec):
    target = 32.0
    found = cheapest_quality(image, codec, target)
    assert found is not None
    quality, data, achieved = found
    assert data == encode_classic(image, codec, quality)
    assert achieved == pytest.approx(psnr(image, decode_classic(data))) and achieved >= target
    assert psnr(image, decode_classic(encode_classic(image, codec, quality - 1))) < target


def test_cheapest_quality_with_mask_scale_and_quality_subset(image):
    mask = torch.zeros(40, 48, dtype=torch.bool)
    mask[30:, :] = True  # smooth rows only, which survive downscaling well
    qualities = [5, 20, 40, 60, 80, 95]
    found = cheapest_quality(image, "webp", 35.0, mask=mask, scale=0.5, qualities=qualities)
    assert found is not None
    quality, data, achieved = found
    assert quality in qualities
    recon = decode_classic(data, size=(40, 48))
    assert decode_classic(data).shape == (3, 20, 24)
    assert achieved == pytest.approx(psnr(image, recon, mask)) and achieved >= 35.0
    if quality != qualities[0]:
        lower = qualities[qualities.index(quality) - 1]
        worse = decode_classic(encode_classic(image, "webp", lower, scale=0.5), size=(40, 48))
        assert psnr(image, worse, mask) < 35.0


def test_cheapest_quality_unreachable_target_returns_none(image):
    assert cheapest_quality(image, "jpeg", 80.0) is None


def test_cheapest_quality_rejects_bad_masks(image):
    with pytest.raises(ValueError, match="no pixels"):
        cheapest_quality(image, "jpeg", 30.0, mask=torch.zeros(40, 48, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        cheapest_quality(image, "jpeg", 30.0, mask=torch.ones(40, 47, dtype=torch.bool))


@pytest.mark.parametrize("codec", CLASSIC_CODECS)
def test_truncated_bytes_raise_format_error(image, codec):
    data = encode_classic(image, codec, 50)
    with pytest.raises(FormatError, match="cannot decode"):
        decode_classic(data[: len(data) // 2])


def test_garbage_and_non_classic_formats_raise_format_error(image):
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(png, "PNG")
    for data in (b"", b"not an image at all", png.getvalue()):
        with pytest.raises(FormatError):
            decode_classic(data)
    assert issubclass(FormatError, ValueError)


def test_unknown_codec_lists_valid_ones(image):
    with pytest.raises(ValueError, match="jpeg, webp, avif"):
        encode_classic(image, "png", 50)
    with pytest.raises(ValueError, match="jpeg, webp, avif"):
        cheapest_quality(image, "jxl", 30.0)


@pytest.mark.parametrize("codec, quality", [("jpeg", 0), ("jpeg", 101), ("webp", -1), ("avif", 101), ("webp", 50.0)])
def test_invalid_quality_raises(image, codec, quality):
    with pytest.raises(ValueError, match="quality"):
        encode_classic(image, codec, quality)


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.5, float("nan")])
def test_invalid_scale_raises(image, scale):
    with pytest.raises(ValueError, match="scale"):
        encode_classic(image, "jpeg", 50, scale=scale)
