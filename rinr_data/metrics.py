"""Image quality metrics used by the encoder's stopping rule, the tools and the benchmarks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .frames import box_mask


def mse_to_psnr(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB for a mean squared error on signals with the given peak (inf for a zero error)."""
    if mse <= 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB between two uint8 images [3, H, W], optionally over the pixels where mask [H, W] is True."""
    diff = a.to(torch.float64) - b.to(torch.float64)
    sq = diff * diff
    if mask is not None:
        if not bool(mask.any()):
            return math.nan
        sq = sq[:, mask]
    return mse_to_psnr(float(sq.mean()), 255.0)


@dataclass(frozen=True)
class RegionPSNR:
    """PSNR of a reconstruction over the whole frame, inside the boxes (pooled) and outside them."""

    full: float
    objects: float
    background: float


def region_psnr(original: torch.Tensor, decoded: torch.Tensor, boxes: Sequence[Sequence[float]]) -> RegionPSNR:
    """Full, object (MSE pooled over all box pixels; NaN without boxes) and background PSNR of uint8 [3, H, W] images."""
    if original.shape != decoded.shape:
        raise ValueError(f"shape mismatch: {tuple(original.shape)} vs {tuple(decoded.shape)}")
    _, h, w = original.shape
    mask = box_mask(boxes, h, w)
    return RegionPSNR(
        full=psnr(original, decoded),
        objects=psnr(original, decoded, mask),
        background=psnr(original, decoded, ~mask) if not bool(mask.all()) else math.nan,
    )
