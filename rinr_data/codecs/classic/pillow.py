"""Classic image codecs (JPEG, WebP, AVIF) through Pillow, for classic-codec shards and benchmark baselines."""

from __future__ import annotations

import io
import math
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ...core.frames import to_chw_uint8
from ...core.metrics import psnr
from ...errors import FormatError

CLASSIC_CODECS = ("jpeg", "webp", "avif")

# Inclusive quality bounds Pillow accepts; libjpeg treats 0 like 1, so JPEG starts at 1.
_QUALITY_RANGE = {"jpeg": (1, 100), "webp": (0, 100), "avif": (0, 100)}
_PIL_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
# Fixed encoder settings so the same image and quality always give the same bytes. AVIF pins one
# thread because libaom's output changes with the thread count (which otherwise follows the CPU count).
_SAVE_OPTIONS = {
    "jpeg": {"optimize": True},
    "webp": {"method": 6},
    "avif": {"speed": 6, "max_threads": 1},
}

# Quality -> (encoded bytes, PSNR) for the bisection searches.
Scorer = Callable[[int], tuple[bytes, float]]


def _check_codec(codec: str) -> str:
    if codec not in CLASSIC_CODECS:
        raise ValueError(f"unknown classic codec {codec!r}; valid codecs: {', '.join(CLASSIC_CODECS)}")
    return codec


def quality_range(codec: str) -> range:
    """All qualities the codec accepts, lowest first."""
    lo, hi = _QUALITY_RANGE[_check_codec(codec)]
    return range(lo, hi + 1)


def _check_quality(codec: str, quality: int) -> int:
    valid = quality_range(codec)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or int(quality) not in valid:
        raise ValueError(f"{codec} quality must be an integer in {valid.start}..{valid.stop - 1}, got {quality!r}")
    return int(quality)


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    if not (0.0 < scale <= 1.0) or math.isnan(scale):
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    return max(1, round(height * scale)), max(1, round(width * scale))


def encode_classic(image: torch.Tensor, codec: str, quality: int, *, scale: float = 1.0) -> bytes:
    """Encode a uint8 [3, H, W] image as JPEG/WebP/AVIF bytes, optionally downscaled by `scale` first."""
    _check_codec(codec)
    quality = _check_quality(codec, quality)
    chw = to_chw_uint8(image)
    _, h, w = chw.shape
    pil = Image.fromarray(np.ascontiguousarray(chw.permute(1, 2, 0).numpy()))
    sh, sw = _scaled_size(h, w, scale)
    if (sh, sw) != (h, w):
        pil = pil.resize((sw, sh), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, _PIL_FORMAT[codec], quality=quality, **_SAVE_OPTIONS[codec])
    return buf.getvalue()


def decode_classic(data: bytes, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode JPEG/WebP/AVIF bytes to a uint8 [3, H, W] RGB tensor, bicubically resized to size=(H, W) if given."""
    try:
        with Image.open(io.BytesIO(data), formats=list(_PIL_FORMAT.values())) as pil:
            pil.load()
            rgb = pil.convert("RGB")
    # Pillow reports bad input through several exception types (truncation is an OSError,
    # some header errors are SyntaxError/ValueError, oversized images a DecompressionBombError).
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        reason = "not a JPEG, WebP or AVIF image" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise FormatError(f"cannot decode classic image ({len(data)} bytes): {reason}") from exc
    if size is not None:
        h, w = (int(v) for v in size)
        if h < 1 or w < 1:
            raise ValueError(f"size must be positive (H, W), got {size!r}")
        if rgb.size != (w, h):
            rgb = rgb.resize((w, h), Image.Resampling.BICUBIC)
    return to_chw_uint8(np.array(rgb))  # a copy: torch warns on read-only arrays


def bisect_quality(
    codec: str, target_psnr: float, score: Scorer, qualities: Sequence[int] | None = None
) -> tuple[int, bytes, float] | None:
    """Lowest quality whose score(quality) PSNR reaches target, by bisection (PSNR assumed monotone in quality)."""
    qs = sorted({_check_quality(codec, q) for q in (quality_range(codec) if qualities is None else qualities)})
    if not qs:
        raise ValueError("qualities is empty")
    cache: dict[int, tuple[bytes, float]] = {}

    def passes(i: int) -> bool:
        if qs[i] not in cache:
            cache[qs[i]] = score(qs[i])
        return cache[qs[i]][1] >= target_psnr

    if not passes(len(qs) - 1):
        return None
    # Invariant: qs[hi] passes and (when lo >= 0) qs[lo] fails, so the answer's lower neighbour fails.
    lo, hi = -1, len(qs) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    data, achieved = cache[qs[hi]]
    return qs[hi], data, achieved


def cheapest_quality(
    image: torch.Tensor,
    codec: str,
    target_psnr: float,
    *,
    mask: torch.Tensor | None = None,
    scale: float = 1.0,
    qualities: Sequence[int] | None = None,
) -> tuple[int, bytes, float] | None:
    """(quality, bytes, PSNR) of the lowest quality reaching target_psnr over mask pixels at full size, or None."""
    chw = to_chw_uint8(image)
    _, h, w = chw.shape
    if mask is not None and (mask.shape != (h, w) or mask.dtype != torch.bool):
        raise ValueError(f"mask must be bool [{h}, {w}], got {mask.dtype} {tuple(mask.shape)}")
    if mask is not None and not bool(mask.any()):
        raise ValueError("mask selects no pixels")

    def score(quality: int) -> tuple[bytes, float]:
        data = encode_classic(chw, codec, quality, scale=scale)
        return data, psnr(chw, decode_classic(data, (h, w)), mask)

    return bisect_quality(codec, target_psnr, score, qualities)


def quality_sweep(image: torch.Tensor, codec: str, qualities: Sequence[int]) -> list[tuple[int, int, float]]:
    """(quality, nbytes, full-frame PSNR) for each quality, for rate-distortion curves."""
    chw = to_chw_uint8(image)
    rows = []
    for q in qualities:
        data = encode_classic(chw, codec, q)
        rows.append((int(q), len(data), psnr(chw, decode_classic(data))))
    return rows
