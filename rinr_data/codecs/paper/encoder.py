"""Encoder of the paper codec (Residual-INR): background SIRENs, then object SIRENs for the box residuals."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import torch

from ...core.devices import resolve_device
from ...core.fitting import derive_seed
from ...core.frames import box_mask, box_region
from ...core.progress import ProgressBar
from ...format.quantize import f16_scale
from ..base import EncodedFrame, measure, prepare_frames
from . import packing
from . import record as record_format
from .config import PaperConfig
from .fitting import FitSettings, FitTarget, fit_sirens
from .siren import SirenShape

# The residual scale Q is stored as float16; a floor keeps near-perfect boxes from dividing by ~0.
MIN_Q = 1.0 / 512


def _settings(config: PaperConfig, target: float, salt: int) -> FitSettings:
    return FitSettings(
        target_psnr=target,
        max_steps=config.max_steps,
        lr=config.lr,
        pixels_per_step=config.pixels_per_step,
        eval_every=config.eval_every,
        w0=config.stored_w0,
        weight_bits=config.weight_bits,
        first_layer_bits=config.first_layer_bits,
        seed=derive_seed(config.seed, salt),
    )


def _pixels(image: torch.Tensor) -> torch.Tensor:
    """uint8 [3, h, w] -> float [h*w, 3] in [0, 1]."""
    return image.to(torch.float32).div(255).permute(1, 2, 0).reshape(-1, 3)


def encode_frames(
    images: Sequence[Any], boxes_list: Sequence[Any], config: PaperConfig, progress: bool = False
) -> list[EncodedFrame]:
    """Encode frames together (all INRs of one shape fitted in one batch) and report what each record achieves."""
    device = resolve_device(config.device)
    frames, boxes = prepare_frames(images, boxes_list)
    bar = ProgressBar(progress, len(frames))

    bg_targets = []
    for f, b in zip(frames, boxes):
        outside = ~box_mask(b, f.shape[1], f.shape[2]).reshape(-1)
        bg_targets.append(FitTarget(f.shape[1], f.shape[2], _pixels(f), 1.0, outside if outside.any() else None))
    bg_fits = fit_sirens(
        config.background,
        bg_targets,
        _settings(config, config.background_psnr, 0),
        device,
        on_step=bar.step("background"),
    )
    w0 = config.stored_w0
    records = [
        record_format.Record(f.shape[1], f.shape[2], w0, fit.inr, [], config.entropy_coder)
        for f, fit in zip(frames, bg_fits)
    ]
    # Residuals are taken against the background exactly as the decoder will reconstruct it.
    bg_images = [bg.cpu() for bg in packing.backgrounds(records, device)]

    by_shape: dict[SirenShape, list[tuple[int, int, FitTarget, float]]] = defaultdict(list)
    for fi, (f, b, bg) in enumerate(zip(frames, boxes, bg_images)):
        for bi, box in enumerate(b):
            reg = box_region(box, f.shape[1], f.shape[2])
            orig = f[:, reg.top : reg.bottom, reg.left : reg.right].to(torch.float32) / 255
            residual = orig - bg[:, reg.top : reg.bottom, reg.left : reg.right]
            q = f16_scale(max(float(residual.abs().max()), MIN_Q), 1)
            target = FitTarget(reg.height, reg.width, residual.permute(1, 2, 0).reshape(-1, 3) / q, q)
            by_shape[config.object_shape(reg.area)].append((fi, bi, target, q))
    objects: dict[tuple[int, int], record_format.ObjectEntry] = {}
    steps: dict[int, dict[str, int]] = {i: {"background": bg_fits[i].steps, "objects": 0} for i in range(len(frames))}
    for salt, (shape, members) in enumerate(sorted(by_shape.items()), start=1):
        fits = fit_sirens(
            shape,
            [m[2] for m in members],
            _settings(config, config.object_psnr, salt),
            device,
            on_step=bar.step(f"objects {shape.width}x{shape.depth}"),
        )
        for (fi, bi, _, q), fit in zip(members, fits):
            objects[(fi, bi)] = record_format.ObjectEntry(tuple(float(v) for v in boxes[fi][bi]), q, fit.inr)
            steps[fi]["objects"] = max(steps[fi]["objects"], fit.steps)
    for fi, rec in enumerate(records):
        rec.objects = [objects[(fi, bi)] for bi in range(len(boxes[fi]))]
    bar.close()

    blobs = [record_format.pack(r) for r in records]
    return measure(
        record_format.unpack, packing.pack, blobs, frames, boxes, device, [steps[fi] for fi in range(len(frames))]
    )
