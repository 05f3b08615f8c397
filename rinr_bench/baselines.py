"""Benchmark-only classic-codec baselines: cheapest full-frame coding and a careful user's background + object atlas."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from rinr_data.codecs.classic import decode_classic, encode_classic
from rinr_data.codecs.classic.pillow import bisect_quality, cheapest_quality
from rinr_data.core.frames import Region, box_mask, box_region, clip_boxes, to_chw_uint8
from rinr_data.core.metrics import psnr

BACKGROUND_SCALES = (1.0, 0.5, 0.25)
# Crops go into cells aligned to 16 px (a 4:2:0 JPEG macroblock) so no coding block mixes two crops.
CELL_ALIGN = 16
# Per box: its atlas x, y and frame x, y as uint16; the crop size follows from the box itself.
POSITION_BYTES = 8


@dataclass(frozen=True)
class Baseline:
    """Size and quality of one baseline coding of one frame."""

    name: str
    nbytes: int
    object_psnr: float
    background_psnr: float
    full_psnr: float
    details: dict[str, Any] = field(default_factory=dict)
    # The reconstruction the PSNRs were measured on, for checks and visual comparisons.
    decoded: torch.Tensor | None = field(default=None, repr=False, compare=False)


def _baseline(
    name: str,
    image: torch.Tensor,
    decoded: torch.Tensor,
    mask: torch.Tensor | None,
    nbytes: int,
    details: dict[str, Any],
) -> Baseline:
    mask = torch.zeros(image.shape[1:], dtype=torch.bool) if mask is None else mask
    # psnr() gives NaN for an empty mask, matching region_psnr's "no objects" / "no background".
    return Baseline(
        name, nbytes, psnr(image, decoded, mask), psnr(image, decoded, ~mask), psnr(image, decoded), details, decoded
    )


def _full_frame(
    image: torch.Tensor, codec: str, mask: torch.Tensor | None, found: tuple[int, bytes, float] | None
) -> Baseline | None:
    if found is None:
        return None
    quality, data, _ = found
    return _baseline(
        f"{codec}-full-frame",
        image,
        decode_classic(data),
        mask,
        len(data),
        {"qualities": {"frame": quality}, "scale": 1.0},
    )


def full_frame_at_psnr(
    image: torch.Tensor, codec: str, target_psnr: float, *, mask: torch.Tensor | None = None
) -> Baseline | None:
    """Cheapest full-frame coding whose PSNR over mask (default: all pixels) reaches target_psnr, or None."""
    image = to_chw_uint8(image)
    return _full_frame(image, codec, mask, cheapest_quality(image, codec, target_psnr, mask=mask))


def full_frame_at_region_psnrs(
    image: torch.Tensor,
    codec: str,
    boxes: Sequence[Sequence[float]],
    object_psnr: float,
    background_psnr: float,
    *,
    mask: torch.Tensor | None = None,
) -> Baseline | None:
    """Cheapest full-frame coding reaching `object_psnr` over the box pixels and `background_psnr` over the rest,
    or None: the classic codec at both of a record's qualities at once (`mask`: the boxes' mask, if already built)."""
    image = to_chw_uint8(image)
    _, h, w = image.shape
    mask = box_mask(boxes, h, w) if mask is None else mask
    # A region a frame does not have sets no target (an empty mask's PSNR is NaN).
    goals = [(m, t) for m, t in ((mask, object_psnr), (~mask, background_psnr)) if bool(m.any())]

    def score(quality: int) -> tuple[bytes, float]:
        data = encode_classic(image, codec, quality)
        decoded = decode_classic(data, (h, w))
        return data, min(psnr(image, decoded, m) - t for m, t in goals)

    return _full_frame(image, codec, mask, bisect_quality(codec, 0.0, score))


def _cheapest_background(
    image: torch.Tensor, codec: str, target: float, mask: torch.Tensor | None
) -> tuple[int, float, bytes] | None:
    options = []
    for scale in BACKGROUND_SCALES:
        found = cheapest_quality(image, codec, target, mask=mask, scale=scale)
        if found is not None:
            options.append((found[0], scale, found[1]))
    return min(options, key=lambda o: len(o[2]), default=None)


def _align(n: int) -> int:
    return -(-n // CELL_ALIGN) * CELL_ALIGN


def _cell(image: torch.Tensor, r: Region) -> torch.Tensor:
    crop = image[:, r.top : r.bottom, r.left : r.right].numpy()
    # Edge replication keeps the padding as cheap to code as the crop border itself.
    pad = ((0, 0), (0, _align(r.height) - r.height), (0, _align(r.width) - r.width))
    return torch.from_numpy(np.pad(crop, pad, mode="edge"))


def _shelf_pack(sizes: Sequence[tuple[int, int]]) -> tuple[list[tuple[int, int]], int, int]:
    """(y, x) of each (h, w) cell packed in rows, tallest first, and the atlas (height, width)."""
    width = max(max(w for _, w in sizes), _align(math.isqrt(sum(h * w for h, w in sizes) - 1) + 1))
    positions: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    y = x = shelf = 0
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i][0]):
        h, w = sizes[i]
        if x + w > width:
            y, x, shelf = y + shelf, 0, 0
        positions[i] = (y, x)
        x, shelf = x + w, max(shelf, h)
    return positions, y + shelf, width


def _atlas(image: torch.Tensor, regions: Sequence[Region]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    cells = [_cell(image, r) for r in regions]
    positions, height, width = _shelf_pack([tuple(c.shape[1:]) for c in cells])
    # Flat mean-colour filler costs almost nothing and, being block aligned, does not bleed into crops.
    mean = torch.cat([c.reshape(3, -1) for c in cells], 1).double().mean(1).round().to(torch.uint8)
    atlas = mean[:, None, None].expand(3, height, width).clone()
    for cell, (y, x) in zip(cells, positions):
        atlas[:, y : y + cell.shape[1], x : x + cell.shape[2]] = cell
    return atlas, positions


def _composite(
    background: torch.Tensor, atlas: torch.Tensor, regions: Sequence[Region], positions: Sequence[tuple[int, int]]
) -> torch.Tensor:
    out = background.clone()
    for r, (y, x) in zip(regions, positions):
        out[:, r.top : r.bottom, r.left : r.right] = atlas[:, y : y + r.height, x : x + r.width]
    return out


def roi_baseline(
    image: torch.Tensor, boxes: Sequence[Sequence[float]], codec: str, object_psnr: float, background_psnr: float
) -> Baseline | None:
    """Cheapest (scaled) background frame plus one atlas of object crops meeting both PSNR targets, or None."""
    image = to_chw_uint8(image)
    _, h, w = image.shape
    boxes = clip_boxes(boxes, h, w, warn=False)
    mask = box_mask(boxes, h, w)
    # With every pixel in a box the background target is vacuous, so any background coding will do.
    bg_mask, bg_target = (~mask, background_psnr) if not bool(mask.all()) else (None, -math.inf)
    found = _cheapest_background(image, codec, bg_target, bg_mask)
    if found is None:
        return None
    bg_quality, scale, bg_data = found
    background = decode_classic(bg_data, (h, w))
    details: dict[str, Any] = {
        "qualities": {"background": bg_quality},
        "scale": scale,
        "bytes": {"background": len(bg_data)},
    }
    if len(boxes) == 0:
        return _baseline(f"{codec}-roi", image, background, mask, len(bg_data), details)

    regions = [box_region(b, h, w) for b in boxes]
    atlas, positions = _atlas(image, regions)

    def score(quality: int) -> tuple[bytes, float]:
        data = encode_classic(atlas, codec, quality)
        return data, psnr(image, _composite(background, decode_classic(data), regions, positions), mask)

    found_atlas = bisect_quality(codec, object_psnr, score)
    if found_atlas is None:
        return None
    atlas_quality, atlas_data, _ = found_atlas
    composite = _composite(background, decode_classic(atlas_data), regions, positions)
    details["qualities"]["objects"] = atlas_quality
    details["bytes"]["atlas"] = len(atlas_data)
    details["atlas_size"] = tuple(atlas.shape[1:])
    nbytes = len(bg_data) + len(atlas_data) + POSITION_BYTES * len(regions)
    return _baseline(f"{codec}-roi", image, composite, mask, nbytes, details)
