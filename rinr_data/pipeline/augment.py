"""Detection augmentation on the device, with torchvision.transforms.v2 (boxes move too).

With `AugmentConfig.at_decode` the geometric part (flip, scale jitter, crop/pad) is drawn per frame as a `Geometry`
before the decode: a codec that renders through a sampling warp (the latent grid) then synthesises only the augmented
frame's pixels, other frames are decoded whole and resampled to the same geometry (`Geometry.resample`), and the boxes
follow it (`Geometry.map_boxes`). The rest (colour jitter, blur, noise, box blur, background sharpen) runs on the
decoded batch either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..codecs.base import Warp
from ..core.frames import box_mask

# Letterbox and crop padding: the grey most detection pipelines use, so padding looks alike everywhere.
PAD_VALUE = 114 / 255


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations applied after decode: horizontal flip, scale jitter then crop/pad back, colour jitter, and
    (off by default) Gaussian blur of the frame or of its boxes only, noise, and sharpening outside the boxes.

    Residual-INR keeps boxes sharper than a background whose fine detail the INR smooths away, and a detector
    trained on such frames fires on crisp clutter in real frames (docs/BENCHMARKS.md, accuracy parity). `box_blur`
    (the boxes' sharpness) and `background_sharpen` (the background's detail) each take one side of that gap away
    and cut those false alarms; whole-frame `blur` and `noise` keep the gap and did not help.

    Attributes:
        blur: probability of a Gaussian blur of the whole frame, sigma drawn from `blur_sigma` (pixels).
        noise: probability of additive Gaussian noise of standard deviation `noise_sigma` (images in [0, 1]).
        box_blur: probability of a Gaussian blur of the pixels inside the boxes only (sigma from `box_blur_sigma`),
            which takes away the sharpness gap between boxes and background that whole-frame blur keeps.
        background_sharpen: probability of sharpening the pixels outside the boxes (torchvision's
            `adjust_sharpness`, factor drawn from `background_sharpen_factor`), which gives a background decoded
            at modest quality back the fine detail of real frames.
        at_decode: draw flip, scale jitter and crop/pad per frame before the decode and apply them (with the
            letterbox) in it where that synthesises fewer pixels than the frame has, for codecs that can (latent
            grid): the INR is sampled at the augmented frame's pixels only. Other frames are decoded whole and
            resampled to the same geometry. The sizes and offsets are drawn as the v2 steps draw them; the pixels
            differ from resampling a decoded frame only by interpolation (docs/LOADING.md). False: decode every frame
            whole, then the v2 pipeline draws and applies the geometry.
    """

    flip: float = 0.5
    scale: tuple[float, float] = (0.75, 1.6)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise: float = 0.0
    noise_sigma: float = 0.02
    box_blur: float = 0.0
    box_blur_sigma: tuple[float, float] = (0.5, 2.0)
    background_sharpen: float = 0.0
    background_sharpen_factor: tuple[float, float] = (2.0, 4.0)
    at_decode: bool = True


def _blur_kernel(sigma_max: float) -> int:
    """Odd Gaussian kernel size covering +-3 sigma of the widest blur drawn."""
    return 2 * int(3 * sigma_max) + 1


class _RegionTransform(v2.Transform):
    """With probability `p`, replace the pixels inside the boxes (or outside them) by a filtered frame."""

    inside = True  # filter the box pixels; False: the pixels outside every box

    def __init__(self, p: float, strength: tuple[float, float]) -> None:
        super().__init__()
        self.p, self.strength = p, strength

    def filtered(self, image: torch.Tensor, strength: float) -> torch.Tensor:
        """The whole frame filtered at `strength`."""
        raise NotImplementedError

    def forward(self, sample: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """The sample with its region's pixels filtered (or unchanged)."""
        boxes = sample["boxes"].as_subclass(torch.Tensor)
        if (self.inside and len(boxes) == 0) or torch.rand(()) >= self.p:
            return sample
        image = sample["image"].as_subclass(torch.Tensor)
        filtered = self.filtered(image, float(torch.empty(()).uniform_(*self.strength)))
        mask = box_mask(boxes, *image.shape[-2:], image.device)[None]
        region = mask if self.inside else ~mask
        return {**sample, "image": tv_tensors.wrap(torch.where(region, filtered, image), like=sample["image"])}


class BoxBlur(_RegionTransform):
    """With probability `p`, Gaussian-blur the pixels inside the boxes of a {"image", "boxes", ...} sample only."""

    def __init__(self, p: float, sigma: tuple[float, float]) -> None:
        super().__init__(p, sigma)
        self.kernel = _blur_kernel(sigma[1])

    def filtered(self, image: torch.Tensor, strength: float) -> torch.Tensor:
        """The frame blurred with sigma `strength`."""
        return TF.gaussian_blur(image, [self.kernel, self.kernel], [strength, strength])


class BackgroundSharpen(_RegionTransform):
    """With probability `p`, sharpen the pixels outside the boxes (the whole frame when it has none)."""

    inside = False

    def filtered(self, image: torch.Tensor, strength: float) -> torch.Tensor:
        """The frame sharpened by torchvision's `adjust_sharpness` with factor `strength` (1: unchanged)."""
        return TF.adjust_sharpness(image, strength)


def build_transform(config: AugmentConfig, size: tuple[int, int], geometric: bool = True) -> v2.Transform:
    """A v2 pipeline mapping {"image", "boxes", "labels"} to the same at `size` (H, W) (without flip, scale jitter
    and crop when not `geometric`: those already applied at decode)."""
    steps: list[v2.Transform] = []
    if geometric and config.flip > 0:
        steps.append(v2.RandomHorizontalFlip(config.flip))
    if geometric and config.scale != (1.0, 1.0):
        steps += [
            # ScaleJitter's target_size is (width, height): (H, W) here made every draw ~min(W/H, H/W) too small.
            v2.ScaleJitter(target_size=(size[1], size[0]), scale_range=config.scale, antialias=True),
            v2.RandomCrop(size, pad_if_needed=True, fill=PAD_VALUE),
        ]
    if config.brightness or config.contrast or config.saturation or config.hue:
        steps.append(v2.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue))
    if config.blur > 0:
        steps.append(
            v2.RandomApply(
                [v2.GaussianBlur(_blur_kernel(config.blur_sigma[1]), sigma=config.blur_sigma)], p=config.blur
            )
        )
    if config.noise > 0:
        steps.append(v2.RandomApply([v2.GaussianNoise(sigma=config.noise_sigma, clip=True)], p=config.noise))
    if config.box_blur > 0:
        steps.append(BoxBlur(config.box_blur, config.box_blur_sigma))
    if config.background_sharpen > 0:
        steps.append(BackgroundSharpen(config.background_sharpen, config.background_sharpen_factor))
    # Boxes cropped away or squeezed to nothing leave with their labels.
    steps.append(v2.SanitizeBoundingBoxes(min_size=1.0))
    return v2.Compose(steps)


def augment_batch(
    images: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor], transform: v2.Transform, seed: int
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Apply `transform` to every image [B, 3, H, W] with its boxes under a fixed seed (reproducible batches)."""
    size = tuple(images.shape[-2:])
    devices = [images.device] if images.device.type == "cuda" else []
    out_images, out_boxes, out_labels = [], [], []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for img, b, lab in zip(images, boxes, labels):
            sample = {
                "image": tv_tensors.Image(img),
                "boxes": tv_tensors.BoundingBoxes(b, format="XYXY", canvas_size=size),
                "labels": lab,
            }
            result = transform(sample)
            out_images.append(result["image"].as_subclass(torch.Tensor).clamp_(0, 1))
            out_boxes.append(result["boxes"].as_subclass(torch.Tensor))
            out_labels.append(result["labels"])
    return torch.stack(out_images), out_boxes, out_labels


def letterbox_size(frame: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a `frame` (H, W) letterboxed into `size`: scaled to fit, aspect ratio kept, rounded."""
    h, w = frame
    if (h, w) == tuple(size):
        return h, w
    scale = min(size[0] / h, size[1] / w)
    return max(1, round(h * scale)), max(1, round(w * scale))


@dataclass(frozen=True)
class Geometry:
    """One frame's geometric augmentation on its letterbox canvas of `size` (H, W), in the order of the v2 steps:
    mirrored left-right when `flip`, resized to `scaled` (H', W'), then cut back to `size` with its top-left pixel at
    `offset` (row, column) of the resized canvas; where that reaches past it (negative offset, or a canvas smaller
    than `size`) the frame is padded with PAD_VALUE, as RandomCrop(pad_if_needed=True) pads.
    """

    size: tuple[int, int]
    flip: bool
    scaled: tuple[int, int]
    offset: tuple[int, int]

    @classmethod
    def identity(cls, size: tuple[int, int]) -> "Geometry":
        """No augmentation: only the letterbox into `size`."""
        return cls(tuple(size), False, tuple(size), (0, 0))  # type: ignore[arg-type]

    def warp(self, frame: tuple[int, int]) -> Warp:
        """Where each output pixel samples a decoded `frame` (h, w): letterbox, flip, resize and crop composed."""
        (out_h, out_w), (sh, sw), (top, left) = self.size, self.scaled, self.offset
        lh, lw = letterbox_size(frame, self.size)
        # Output row i is row i + top of the resized canvas, (i + top) * H / H' of the letterbox canvas, and that
        # times h / lh of the frame; columns alike, read from the mirrored side when flipped.
        row_scale = out_h / sh * frame[0] / lh
        col_scale = out_w / sw * frame[1] / lw
        if not self.flip:
            return Warp(self.size, (row_scale, col_scale), (top * row_scale, left * col_scale))
        return Warp(self.size, (row_scale, -col_scale), (top * row_scale, frame[1] * out_w / lw - left * col_scale))

    def resample(self, canvas: torch.Tensor) -> torch.Tensor:
        """A decoded, letterboxed frame [3, H, W] through this geometry with the v2 steps' kernels: flip, bilinear
        antialiased resize (ScaleJitter's), pad with PAD_VALUE and crop (RandomCrop's)."""
        image = TF.horizontal_flip(canvas) if self.flip else canvas
        if self.scaled != self.size:
            image = TF.resize(image, list(self.scaled), antialias=True)
        (top, left), (sh, sw), (out_h, out_w) = self.offset, self.scaled, self.size
        pad = [max(0, -left), max(0, -top), max(0, left + out_w - sw), max(0, top + out_h - sh)]
        if any(pad):
            image = TF.pad(image, pad, fill=PAD_VALUE)
        return TF.crop(image, top + pad[1], left + pad[0], out_h, out_w)

    def map_boxes(
        self, boxes: torch.Tensor, labels: torch.Tensor, frame: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """XYXY boxes of the decoded `frame` (h, w) and their labels as they come out of this geometry: moved with
        the pixels, clipped to the output, and dropped with their labels where under a pixel wide or high (the v2
        pipeline's SanitizeBoundingBoxes(min_size=1))."""
        b = boxes.reshape(-1, 4)
        (out_h, out_w), (sh, sw), (top, left) = self.size, self.scaled, self.offset
        lh, lw = letterbox_size(frame, self.size)
        # The v2 kernels' steps in their order and dtype, so the boxes equal theirs to float rounding.
        if (lh, lw) != tuple(frame):
            b = b * torch.tensor([lw / frame[1], lh / frame[0]] * 2, dtype=b.dtype, device=b.device)
        if self.flip:
            b = torch.stack([out_w - b[:, 2], b[:, 1], out_w - b[:, 0], b[:, 3]], dim=1)
        if (sh, sw) != (out_h, out_w):
            b = b * torch.tensor([sw / out_w, sh / out_h] * 2, dtype=b.dtype, device=b.device)
        if (top, left) != (0, 0):
            b = b - torch.tensor([left, top] * 2, dtype=b.dtype, device=b.device)
        limit = torch.tensor([out_w, out_h] * 2, dtype=b.dtype, device=b.device)
        b = torch.minimum(b.clamp(min=0), limit)
        keep = ((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)
        return b[keep], labels.reshape(-1)[keep]


def draw_geometries(config: AugmentConfig, size: tuple[int, int], count: int, seed: int) -> list[Geometry]:
    """`count` geometries on canvases of `size` (H, W), drawn from `seed` alone as the v2 steps draw theirs: flip
    with probability `flip`, ScaleJitter's size, RandomCrop(pad_if_needed)'s offset."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    out = []
    for _ in range(count):
        flip = config.flip > 0 and float(torch.rand((), generator=generator)) < config.flip
        if config.scale == (1.0, 1.0):
            out.append(Geometry(tuple(size), flip, tuple(size), (0, 0)))  # type: ignore[arg-type]
            continue
        low, high = config.scale
        jitter = low + float(torch.rand((), generator=generator)) * (high - low)
        # ScaleJitter's base factor for a canvas already of `size` is 1: the drawn scale is the frame's.
        r = jitter
        scaled = (max(1, int(height * r)), max(1, int(width * r)))  # v2 would fail on an empty resize
        offset = []
        for n, target in zip(scaled, size):
            if n > target:  # crop: RandomCrop's offset
                offset.append(int(torch.randint(0, n - target + 1, (), generator=generator)))
            elif n < target:  # pad: RandomCrop pads `target - n` on both sides, then crops
                offset.append(int(torch.randint(0, target - n + 1, (), generator=generator)) - (target - n))
            else:
                offset.append(0)
        out.append(Geometry(tuple(size), flip, scaled, (offset[0], offset[1])))  # type: ignore[arg-type]
    return out
