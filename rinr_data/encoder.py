"""Encoder front door; the "paper" preset (Residual-INR): background SIRENs, then object SIRENs for box residuals.

The "grid" preset lives in grid_encoder.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import record as record_format
from .config import CodecConfig
from .decoder import backgrounds, decode_records
from .devices import resolve_device
from .fitting import FitSettings, FitTarget, fit_sirens
from .frames import box_mask, box_region, clip_boxes, to_chw_uint8
from .metrics import region_psnr
from .quantize import f16_scale
from .siren import SirenShape

# The residual scale Q is stored as float16; a floor keeps near-perfect boxes from dividing by ~0.
MIN_Q = 1.0 / 512


@dataclass
class EncodedFrame:
    """A record plus what it achieves: PSNR (dB) over the whole frame, pooled over the boxes and outside them."""

    blob: bytes
    boxes: np.ndarray  # clipped xyxy boxes as stored in the record
    full_psnr: float
    object_psnr: float
    background_psnr: float
    steps: dict[str, int]
    scene: str | None = None  # scene mode: the id of the scene record this frame's record builds on


def _settings(config: CodecConfig, target: float, salt: int) -> FitSettings:
    return FitSettings(target_psnr=target, max_steps=config.max_steps, lr=config.lr,
                       pixels_per_step=config.pixels_per_step, eval_every=config.eval_every,
                       w0=float(np.float32(config.w0)), weight_bits=config.weight_bits,
                       first_layer_bits=config.first_layer_bits, seed=config.seed * 1000003 + salt)


def _pixels(image: torch.Tensor) -> torch.Tensor:
    """uint8 [3, h, w] -> float [h*w, 3] in [0, 1]."""
    return image.to(torch.float32).div(255).permute(1, 2, 0).reshape(-1, 3)


def encode_frames(images: Sequence[Any], boxes_list: Sequence[Any], config: CodecConfig | None = None,
                  progress: bool = False) -> list[EncodedFrame]:
    """Encode frames together (all INRs of one shape fitted in one batch) and report what each record achieves."""
    config = config or CodecConfig()
    if config.preset == "grid":
        from .grid_encoder import encode_grid_frames  # builds on this module's EncodedFrame

        return encode_grid_frames(images, boxes_list, config, progress)
    device = resolve_device(config.device)
    frames, boxes = prepare_frames(images, boxes_list)
    bar = ProgressBar(progress, len(frames))

    bg_targets = []
    for f, b in zip(frames, boxes):
        outside = ~box_mask(b, f.shape[1], f.shape[2]).reshape(-1)
        bg_targets.append(FitTarget(f.shape[1], f.shape[2], _pixels(f), 1.0, outside if outside.any() else None))
    bg_fits = fit_sirens(config.background, bg_targets, _settings(config, config.background_psnr, 0), device,
                         on_step=bar.step("background"))
    w0 = float(np.float32(config.w0))
    records = [record_format.Record(f.shape[1], f.shape[2], w0, fit.inr, [], config.entropy_coder)
               for f, fit in zip(frames, bg_fits)]
    # Residuals are taken against the background exactly as the decoder will reconstruct it.
    bg_images = [bg.cpu() for bg in backgrounds(records, device)]

    by_shape: dict[SirenShape, list[tuple[int, int, FitTarget, float]]] = defaultdict(list)
    for fi, (f, b, bg) in enumerate(zip(frames, boxes, bg_images)):
        for bi, box in enumerate(b):
            reg = box_region(box, f.shape[1], f.shape[2])
            orig = f[:, reg.top:reg.bottom, reg.left:reg.right].to(torch.float32) / 255
            residual = orig - bg[:, reg.top:reg.bottom, reg.left:reg.right]
            q = f16_scale(max(float(residual.abs().max()), MIN_Q), 1)
            target = FitTarget(reg.height, reg.width, residual.permute(1, 2, 0).reshape(-1, 3) / q, q)
            by_shape[config.object_shape(reg.area)].append((fi, bi, target, q))
    objects: dict[tuple[int, int], record_format.ObjectEntry] = {}
    steps: dict[int, dict[str, int]] = {i: {"background": bg_fits[i].steps, "objects": 0} for i in range(len(frames))}
    for salt, (shape, members) in enumerate(sorted(by_shape.items()), start=1):
        fits = fit_sirens(shape, [m[2] for m in members], _settings(config, config.object_psnr, salt), device,
                          on_step=bar.step(f"objects {shape.width}x{shape.depth}"))
        for (fi, bi, _, q), fit in zip(members, fits):
            objects[(fi, bi)] = record_format.ObjectEntry(tuple(float(v) for v in boxes[fi][bi]), q, fit.inr)
            steps[fi]["objects"] = max(steps[fi]["objects"], fit.steps)
    for fi, rec in enumerate(records):
        rec.objects = [objects[(fi, bi)] for bi in range(len(boxes[fi]))]
    bar.close()

    blobs = [record_format.pack(r) for r in records]
    return measure_records(blobs, frames, boxes, device, [steps[fi] for fi in range(len(frames))])


def prepare_frames(images: Sequence[Any], boxes_list: Sequence[Any]) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """Frames as uint8 [3, H, W] and their boxes clipped to them (raises for mismatched or bad input)."""
    if len(images) != len(boxes_list):
        raise ValueError(f"{len(images)} images but {len(boxes_list)} box lists")
    frames = [to_chw_uint8(img) for img in images]
    return frames, [clip_boxes(b, f.shape[1], f.shape[2]) for f, b in zip(frames, boxes_list)]


def measure_records(blobs: Sequence[bytes], frames: Sequence[torch.Tensor], boxes: Sequence[np.ndarray],
                    device: torch.device, steps: Sequence[dict[str, int]], scenes: dict | None = None,
                    ) -> list[EncodedFrame]:
    """What each record achieves as shipped: parse the bytes back, decode them (with `scenes`), measure PSNR."""
    records = [record_format.unpack(b) for b in blobs]
    decoded = decode_records(records, device, scenes)
    result = []
    for blob, rec, f, b, img, st in zip(blobs, records, frames, boxes, decoded, steps):
        q = region_psnr(f, img.cpu(), b)
        result.append(EncodedFrame(blob, b, q.full, q.objects, q.background, st, getattr(rec, "scene", None)))
    return result


def encode_batch(images: Sequence[Any], boxes_list: Sequence[Any], config: CodecConfig | None = None) -> list[bytes]:
    """Encode frames together; all INRs of the same shape across the batch are fitted in one stacked call."""
    return [f.blob for f in encode_frames(images, boxes_list, config)]


def encode(image: Any, boxes: Any = None, config: CodecConfig | None = None) -> bytes:
    """Encode one frame (HxWx3 uint8 numpy, PIL image or uint8 [3, H, W] tensor) with its xyxy boxes."""
    return encode_batch([image], [boxes], config)[0]


class ProgressBar:
    """Optional tqdm bar counting INR-steps; a no-op when progress is off."""

    def __init__(self, enabled: bool, frames: int) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(desc=f"fitting {frames} frame(s)", unit="INR-step", leave=False)

    def step(self, stage: str) -> Callable[[int], None] | None:
        """A per-step callback that advances the bar by the INRs still active."""
        if self.bar is None:
            return None
        bar = self.bar

        def on_step(active: int) -> None:
            bar.set_postfix_str(stage, refresh=False)
            bar.update(active)

        return on_step

    def close(self) -> None:
        """Close the bar if any."""
        if self.bar is not None:
            self.bar.close()
