"""Detection augmentation on the decoded batch, on its device, with torchvision.transforms.v2 (boxes move too)."""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

# Letterbox and crop padding: the grey most detection pipelines use, so padding looks alike everywhere.
PAD_VALUE = 114 / 255


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations applied after decode: horizontal flip, scale jitter then crop/pad back, colour jitter, and
    (off by default) Gaussian blur of the frame or of its boxes only, and noise.

    Residual-INR keeps boxes sharper than the background, and a detector trained on such frames learns "sharp
    region = object" and fires on sharp clutter in real frames (docs/BENCHMARKS.md, accuracy parity). `box_blur`
    blurs the boxes only, which removes that gap; whole-frame `blur` and `noise` keep it and did not help there.

    Attributes:
        blur: probability of a Gaussian blur of the whole frame, sigma drawn from `blur_sigma` (pixels).
        noise: probability of additive Gaussian noise of standard deviation `noise_sigma` (images in [0, 1]).
        box_blur: probability of a Gaussian blur of the pixels inside the boxes only (sigma from `box_blur_sigma`),
            which takes away the sharpness gap between boxes and background that whole-frame blur keeps.
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


def _blur_kernel(sigma_max: float) -> int:
    """Odd Gaussian kernel size covering +-3 sigma of the widest blur drawn."""
    return 2 * int(3 * sigma_max) + 1


class BoxBlur(v2.Transform):
    """With probability `p`, Gaussian-blur the pixels inside the boxes of a {"image", "boxes", ...} sample only."""

    def __init__(self, p: float, sigma: tuple[float, float]) -> None:
        super().__init__()
        self.p, self.sigma = p, sigma
        self.kernel = _blur_kernel(sigma[1])

    def forward(self, sample: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """The sample with its boxes' pixels blurred (or unchanged)."""
        boxes = sample["boxes"]
        if len(boxes) == 0 or torch.rand(()) >= self.p:
            return sample
        image = sample["image"]
        sigma = float(torch.empty(()).uniform_(*self.sigma))
        blurred = TF.gaussian_blur(image.as_subclass(torch.Tensor), [self.kernel, self.kernel], [sigma, sigma])
        h, w = image.shape[-2:]
        ys = torch.arange(h, device=image.device, dtype=torch.float32)[:, None, None] + 0.5
        xs = torch.arange(w, device=image.device, dtype=torch.float32)[None, :, None] + 0.5
        b = boxes.as_subclass(torch.Tensor).float()
        inside = ((xs >= b[:, 0]) & (xs < b[:, 2]) & (ys >= b[:, 1]) & (ys < b[:, 3])).any(-1)
        return {**sample, "image": tv_tensors.wrap(torch.where(inside, blurred, image.as_subclass(torch.Tensor)),
                                                   like=image)}


def build_transform(config: AugmentConfig, size: tuple[int, int]) -> v2.Transform:
    """A v2 pipeline mapping {"image", "boxes", "labels"} to the same at `size` (H, W)."""
    steps: list[v2.Transform] = []
    if config.flip > 0:
        steps.append(v2.RandomHorizontalFlip(config.flip))
    if config.scale != (1.0, 1.0):
        steps += [v2.ScaleJitter(target_size=size, scale_range=config.scale, antialias=True),
                  v2.RandomCrop(size, pad_if_needed=True, fill=PAD_VALUE)]
    if config.brightness or config.contrast or config.saturation or config.hue:
        steps.append(v2.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue))
    if config.blur > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(_blur_kernel(config.blur_sigma[1]), sigma=config.blur_sigma)],
                                    p=config.blur))
    if config.noise > 0:
        steps.append(v2.RandomApply([v2.GaussianNoise(sigma=config.noise_sigma, clip=True)], p=config.noise))
    if config.box_blur > 0:
        steps.append(BoxBlur(config.box_blur, config.box_blur_sigma))
    # Boxes cropped away or squeezed to nothing leave with their labels.
    steps.append(v2.SanitizeBoundingBoxes(min_size=1.0))
    return v2.Compose(steps)


def augment_batch(images: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor],
                  transform: v2.Transform, seed: int) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Apply `transform` to every image [B, 3, H, W] with its boxes under a fixed seed (reproducible batches)."""
    size = tuple(images.shape[-2:])
    devices = [images.device] if images.device.type == "cuda" else []
    out_images, out_boxes, out_labels = [], [], []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for img, b, lab in zip(images, boxes, labels):
            sample = {"image": tv_tensors.Image(img),
                      "boxes": tv_tensors.BoundingBoxes(b, format="XYXY", canvas_size=size),
                      "labels": lab}
            result = transform(sample)
            out_images.append(result["image"].as_subclass(torch.Tensor).clamp_(0, 1))
            out_boxes.append(result["boxes"].as_subclass(torch.Tensor))
            out_labels.append(result["labels"])
    return torch.stack(out_images), out_boxes, out_labels
