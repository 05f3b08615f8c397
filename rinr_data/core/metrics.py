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
    """Full, object (MSE pooled over box pixels; NaN without boxes) and background PSNR of uint8 [3, H, W] images."""
    if original.shape != decoded.shape:
        raise ValueError(f"shape mismatch: {tuple(original.shape)} vs {tuple(decoded.shape)}")
    _, h, w = original.shape
    mask = box_mask(boxes, h, w)
    return RegionPSNR(
        full=psnr(original, decoded),
        objects=psnr(original, decoded, mask),
        background=psnr(original, decoded, ~mask) if not bool(mask.all()) else math.nan,
    )


@dataclass(frozen=True)
class RegionDetail:
    """Fine detail (mean absolute Laplacian of a [0, 1] image, channel mean) inside the boxes and outside them."""

    objects: float
    background: float

    @property
    def ratio(self) -> float:
        """Detail inside the boxes per unit outside (NaN without boxes or with a flat background).

        The cue detectors trained on residual-coded frames learn: real frames keep it at 2-3 (vtest-long), records
        whose boxes are far crisper than their background (ratio 5 and up) teach "crisp region = object".
        """
        if not self.background > 0:
            return math.nan
        return self.objects / self.background


_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def region_detail(image: torch.Tensor, boxes: Sequence[Sequence[float]]) -> RegionDetail:
    """Fine detail of a float image [3, H, W] in [0, 1] inside and outside the boxes (NaN for an empty region).

    A codec's blur shows here without an original to compare with: low-rate INRs smooth thin structures away,
    which lowers the background's value where JPEG at the same PSNR keeps edges.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image [3, H, W], got {tuple(image.shape)}")
    _, h, w = image.shape
    kernel = _LAPLACIAN.to(image.device, torch.float32).expand(3, 1, 3, 3)
    lap = torch.nn.functional.conv2d(image[None].float(), kernel, groups=3)[0].abs().mean(0)
    inside = box_mask(boxes, h, w)[1:-1, 1:-1].to(image.device)  # the valid convolution drops the frame's rim

    def mean(region: torch.Tensor) -> float:
        return float(lap[region].mean()) if bool(region.any()) else math.nan

    return RegionDetail(objects=mean(inside), background=mean(~inside))
