"""Detection augmentation on the decoded batch, on its device, with torchvision.transforms.v2 (boxes move too)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

# Letterbox and crop padding: the grey most detection pipelines use, so padding looks alike everywhere.
PAD_VALUE = 114 / 255


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations applied after decode: horizontal flip, scale jitter then crop/pad back, colour jitter, and
    (off by default) Gaussian blur and noise.

    Blur and noise target codecs that keep boxes sharper than the background (Residual-INR's premise), where a
    detector could learn "sharp region = object": blurring whole frames and adding sensor-like noise hide that cue.
    Measured on vtest-long at 192x144 they did not lift accuracy on RINR frames (docs/BENCHMARKS.md, accuracy).

    Attributes:
        blur: probability of a Gaussian blur of the whole frame, sigma drawn from `blur_sigma` (pixels).
        noise: probability of additive Gaussian noise of standard deviation `noise_sigma` (images in [0, 1]).
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
        kernel = 2 * int(3 * config.blur_sigma[1]) + 1  # covers +-3 sigma of the widest blur
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=config.blur_sigma)], p=config.blur))
    if config.noise > 0:
        steps.append(v2.RandomApply([v2.GaussianNoise(sigma=config.noise_sigma, clip=True)], p=config.noise))
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
