"""Detection augmentation on the decoded batch, on its device, with torchvision.transforms.v2 (boxes move too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

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


def build_transform(config: AugmentConfig, size: tuple[int, int]) -> v2.Transform:
    """A v2 pipeline mapping {"image", "boxes", "labels"} to the same at `size` (H, W)."""
    steps: list[v2.Transform] = []
    if config.flip > 0:
        steps.append(v2.RandomHorizontalFlip(config.flip))
    if config.scale != (1.0, 1.0):
        steps += [
            v2.ScaleJitter(target_size=size, scale_range=config.scale, antialias=True),
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
