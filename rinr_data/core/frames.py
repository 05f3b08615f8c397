"""Input normalisation: images to uint8 [3, H, W] tensors, boxes to validated pixel regions."""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

ImageLike = Any  # numpy HxWx3 uint8, PIL.Image, or uint8 torch tensor [3, H, W]


class Region(NamedTuple):
    """Integer pixel rectangle covered by a box: rows [top, bottom), columns [left, right)."""

    # A named tuple, not a frozen dataclass: records' parse builds one per box, and a frozen dataclass's
    # construction cost more than the arithmetic.

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        """Rows in the region."""
        return self.bottom - self.top

    @property
    def width(self) -> int:
        """Columns in the region."""
        return self.right - self.left

    @property
    def area(self) -> int:
        """Pixels in the region."""
        return self.height * self.width


def to_chw_uint8(image: ImageLike) -> torch.Tensor:
    """Convert a numpy HxWx3 uint8 array, a PIL image or a uint8 [3, H, W] tensor to a contiguous CPU tensor."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dtype != torch.uint8 or t.ndim != 3 or t.shape[0] != 3:
            raise TypeError(f"tensor images must be uint8 [3, H, W], got {t.dtype} {tuple(t.shape)}")
        return t.contiguous()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise TypeError(f"numpy images must be uint8 HxWx3, got {image.dtype} {image.shape}")
        # Copy: arrays from PIL are read-only and torch must not alias memory it may not write.
        return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).contiguous()
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return to_chw_uint8(np.asarray(image.convert("RGB")))
    raise TypeError(
        "images must be a numpy HxWx3 uint8 array, a PIL.Image or a uint8 torch tensor [3, H, W], "
        f"got {type(image).__name__}"
    )


def as_box_array(boxes: Any) -> np.ndarray:
    """Return boxes as a float64 [N, 4] xyxy array (N may be 0)."""
    if boxes is None:
        return np.zeros((0, 4), dtype=np.float64)
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be [N, 4] xyxy, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("boxes contain NaN or infinite coordinates")
    return arr


def clip_boxes(boxes: Any, height: int, width: int, *, warn: bool = True) -> np.ndarray:
    """Clip xyxy boxes to the image; raise ValueError for inverted or zero-area boxes (after clipping)."""
    arr = as_box_array(boxes)
    clipped = arr.copy()
    clipped[:, 0::2] = np.clip(arr[:, 0::2], 0.0, float(width))
    clipped[:, 1::2] = np.clip(arr[:, 1::2], 0.0, float(height))
    for i, (orig, box) in enumerate(zip(arr, clipped)):
        if orig[2] < orig[0] or orig[3] < orig[1]:
            raise ValueError(f"box {i} is inverted (x1 < x0 or y1 < y0): {orig.tolist()}")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"box {i} has zero area inside the {width}x{height} image: {orig.tolist()}")
    if warn and not np.array_equal(arr, clipped):
        warnings.warn(
            f"{int((arr != clipped).any(axis=1).sum())} box(es) clipped to the {width}x{height} image", stacklevel=3
        )
    return clipped


def box_region(box: Sequence[float], height: int, width: int) -> Region:
    """The integer pixel region a (clipped, positive-area) xyxy box covers: every pixel it touches."""
    x0, y0, x1, y1 = map(float, box)
    left = min(max(int(math.floor(x0)), 0), width - 1)
    top = min(max(int(math.floor(y0)), 0), height - 1)
    right = max(min(int(math.ceil(x1)), width), left + 1)
    bottom = max(min(int(math.ceil(y1)), height), top + 1)
    return Region(top, left, bottom, right)


def box_mask(boxes: Any, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool [H, W] mask of the pixels covered by any of the boxes' regions (`box_region`: every pixel a box touches).

    One rule for the codec and the augmentations: the region a record codes at object quality is exactly the one
    a box-only augmentation filters. Vectorised, so a batch's boxes on a GPU cost no host round trip per box.
    """
    if not isinstance(boxes, torch.Tensor):
        boxes = torch.from_numpy(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    b = boxes.to(device=device, dtype=torch.float64).reshape(-1, 4)
    rows = torch.arange(height, device=b.device, dtype=torch.float64)
    cols = torch.arange(width, device=b.device, dtype=torch.float64)
    left = b[:, 0].floor().clamp(0, width - 1)
    top = b[:, 1].floor().clamp(0, height - 1)
    right = torch.maximum(b[:, 2].ceil().clamp(max=width), left + 1)
    bottom = torch.maximum(b[:, 3].ceil().clamp(max=height), top + 1)
    in_rows = ((rows >= top[:, None]) & (rows < bottom[:, None])).to(torch.float32)  # [N, H]
    in_cols = ((cols >= left[:, None]) & (cols < right[:, None])).to(torch.float32)  # [N, W]
    # A pixel is covered when some box holds both its row and its column: one [H, N] x [N, W] product.
    return (in_rows.T @ in_cols) > 0


def grow_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Bool mask [H, W] grown by `pixels` on every side (Chebyshev distance), clipped to the frame."""
    if pixels <= 0:
        return mask
    grown = torch.nn.functional.max_pool2d(mask[None, None].float(), 2 * pixels + 1, stride=1, padding=pixels)
    return grown[0, 0] > 0


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Float image in [0, 1] to uint8 with round-half-even, the same on every device."""
    return torch.round(image.clamp(0, 1) * 255).to(torch.uint8)
