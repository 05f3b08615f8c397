"""Encoder of the latent-grid codec: per-frame records, and scene mode for static cameras."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...core.devices import resolve_device
from ...core.fitting import derive_seed
from ...core.frames import box_mask, to_uint8
from ...core.metrics import psnr
from ...core.progress import ProgressBar
from ...format.container import scene_id
from ...format.quantize import qmax
from ..base import EncodedFrame, measure, prepare_frames
from . import packing
from . import record as grid_record
from .config import GridConfig, SceneConfig
from .fit import (
    DUAL_STEP,
    INITIAL_WEIGHT,
    WARM_DUAL_STEP,
    WARM_TOP_UP,
    GridFit,
    GridFitSettings,
    GridTarget,
    SceneBase,
    fit_ended,
    fit_grids,
)
from .model import frame_box_levels, level_masks
from .record import GridRecord, quantize_synthesis
from .warm import WarmStart, fit_analysis


def fit_settings(config: GridConfig, salt: int = 0, warm: bool = False) -> GridFitSettings:
    """The fitting settings a codec config asks for (`salt` varies the seed between the calls of one encode); `warm`:
    those of frames that start from the config's warm start."""
    return GridFitSettings(
        steps=config.warm_steps if warm else config.max_steps,
        lr=config.lr,
        weight_bits=config.weight_bits,
        seed=derive_seed(config.seed, salt),
        latent_lr=config.latent_lr,
        dual_step=WARM_DUAL_STEP if warm else DUAL_STEP,
        warm=config.warm if warm else None,
        compile=config.compile,
        precision=config.precision,
    )


def _prepare(images: Sequence[Any], boxes_list: Sequence[Any]) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    frames, boxes = prepare_frames(images, boxes_list)
    # Boxes are stored as float32: round them first so encoder and decoder derive the same box masks.
    return frames, [b.astype(np.float32).astype(np.float64) for b in boxes]


def _record(
    frame: torch.Tensor,
    boxes: np.ndarray,
    fit: GridFit,
    config: GridConfig,
    scene: tuple[str, GridRecord] | None = None,
) -> GridRecord:
    latents = [lat.numpy().astype(np.int32) for lat in fit.latents]
    box_list = [tuple(float(v) for v in b) for b in boxes]
    h, w = frame.shape[1:]
    shape = replace(config.grid, box_levels=fit.box_levels)
    if scene is None:
        synthesis = quantize_synthesis(fit.layers, config.weight_bits)
        return GridRecord(h, w, shape, config.weight_bits, box_list, latents, synthesis, context=fit.context)
    name, parsed = scene
    bound = qmax(config.weight_bits)
    deltas = []
    for base, tensor in zip(parsed.synthesis or [], (t[0] for pair in fit.layers for t in pair)):
        ints = np.clip(np.rint(tensor.reshape(-1).numpy() / np.float32(base.scale)), -bound, bound).astype(np.int32)
        deltas.append(ints - base.values)
    return GridRecord(h, w, shape, config.weight_bits, box_list, latents, None, name, deltas, fit.context)


def _targets(
    frames: list[torch.Tensor], boxes: list[np.ndarray], config: GridConfig, base: SceneBase | None = None
) -> list[GridTarget]:
    targets = []
    for f, b in zip(frames, boxes):
        image, mask = f.to(torch.float32) / 255, box_mask(b, f.shape[1], f.shape[2])
        # On a scene the background comes from the scene's full-resolution levels: frames keep every box-only level.
        levels = None if base is not None else frame_box_levels(image, mask, config.grid, config.background_psnr)
        targets.append(GridTarget(image, mask, config.object_psnr, config.background_psnr, base, levels))
    return targets


def encode_frames(
    images: Sequence[Any], boxes_list: Sequence[Any], config: GridConfig, progress: bool = False
) -> list[EncodedFrame]:
    """Encode self-contained latent-grid records, all frames fitted in one stacked call (from the config's warm start
    when it has one: `warm_steps` steps, and up to a third more for a frame still below a target: WARM_TOP_UP)."""
    device = resolve_device(config.device)
    frames, boxes = _prepare(images, boxes_list)
    bar = ProgressBar(progress, len(frames))
    settings = fit_settings(config, warm=config.warm is not None)
    if config.warm is not None:
        settings = replace(settings, top_up=int(settings.steps * WARM_TOP_UP))
    fits = fit_grids(config.grid, _targets(frames, boxes, config), settings, device, on_step=bar.step("latent grids"))
    bar.close()
    blobs = [grid_record.pack(_record(f, b, fit, config)) for f, b, fit in zip(frames, boxes, fits)]
    steps = [{"grid": fit.steps} for fit in fits]
    return measure(grid_record.unpack, packing.pack, blobs, frames, boxes, device, steps)


def learn_warm_start(
    images: Sequence[Any], boxes_list: Sequence[Any], config: GridConfig, progress: bool = False
) -> WarmStart:
    """The warm start of a dataset, learned on a sample of its frames: they are fitted together (`max_steps`, one
    synthesis and entropy model for all), an analysis is fitted from the frames to their latents, and the sample is
    fitted once more from that start as every later frame will be (`warm_steps`) to learn where the Lagrange
    weights of such short fits should start.

    Frames of the sample's most common size take part (the warm start itself serves every size).
    """
    device = resolve_device(config.device)
    frames, boxes = _prepare(images, boxes_list)
    if not frames:
        raise ValueError("a warm start needs at least one frame")
    sizes = Counter(tuple(f.shape[1:]) for f in frames)
    size = max(sizes, key=lambda s: (sizes[s], s))
    keep = [i for i in range(len(frames)) if tuple(frames[i].shape[1:]) == size]
    targets = _targets([frames[i] for i in keep], [boxes[i] for i in keep], config)
    bar = ProgressBar(progress, len(keep))
    shared_fit = replace(fit_settings(config), shared=True)
    fits, shared = fit_ended(config.grid, targets, shared_fit, device, bar.step("warm start: shared fit"))
    coded = [
        [m if lv < fit.box_levels else torch.ones_like(m) for lv, m in enumerate(level_masks(t.box_mask, config.grid))]
        for t, fit in zip(targets, fits)
    ]
    analysis = fit_analysis([t.image for t in targets], [fit.latents for fit in fits], coded)
    # The long fit's weights say what a converged frame needs; a short one ends less converged and needs more.
    # Starting them where the sample's own short fits from this start ended lets each frame's weights settle
    # within its few steps (measured on 8 held-out frames: objects 0.9 dB under target with the long fit's
    # weights, 0.5 dB over with these). Never below where a fit from scratch starts.
    floor = math.log(INITIAL_WEIGHT)
    start = replace(shared, log_weight=shared.log_weight.clamp_min(floor), analysis=analysis)
    short = fit_settings(config.replace(warm=start), warm=True)
    _, ended = fit_ended(config.grid, targets, short, device, bar.step("warm start: calibration"))
    bar.close()
    return replace(start, log_weight=ended.log_weight.clamp_min(floor))


def _fit_on_scene(
    frames: list[torch.Tensor],
    boxes: list[np.ndarray],
    chunk: list[int],
    config: GridConfig,
    on_scene: tuple[str, GridRecord, SceneBase, dict[str, GridRecord]],
    tune: bool,
    device: torch.device,
    on_step: Callable[[int], None] | None,
) -> list[EncodedFrame]:
    """Fit frames `chunk` on their scene (`on_scene`: its id, record, fitting base and the parsed scenes by id) in
    one call, reusing or (`tune`) fine-tuning its synthesis, and measure them as decoded."""
    name, scene, base, parsed = on_scene
    fits = fit_grids(
        config.grid,
        _targets([frames[i] for i in chunk], [boxes[i] for i in chunk], config, base),
        replace(fit_settings(config, 1), tune_synthesis=tune),
        device,
        on_step,
    )
    blobs = [grid_record.pack(_record(frames[i], boxes[i], fit, config, (name, scene))) for i, fit in zip(chunk, fits)]
    return measure(
        grid_record.unpack,
        packing.pack,
        blobs,
        [frames[i] for i in chunk],
        [boxes[i] for i in chunk],
        device,
        [{"grid": config.max_steps}] * len(chunk),
        parsed,
    )


SHORTFALL_DB = 0.5  # a scene frame this far below a target is refitted with a tuned synthesis ("auto")


def shortfall(frame: EncodedFrame, config: GridConfig) -> float:
    """dB by which a frame misses its object and background targets, summed (a frame without boxes has no object
    PSNR to miss)."""
    missed = max(0.0, config.background_psnr - frame.background_psnr)
    if not math.isnan(frame.object_psnr):
        missed += max(0.0, config.object_psnr - frame.object_psnr)
    return missed


def _scene_background(frames: list[torch.Tensor], boxes: list[np.ndarray]) -> torch.Tensor:
    """Per-pixel median of frames with their box pixels left out (plain median where every frame has a box)."""
    stack = torch.stack([f.to(torch.float32) for f in frames])
    masks = torch.stack([box_mask(b, f.shape[1], f.shape[2]) for f, b in zip(frames, boxes)])[:, None]
    masked = stack.masked_fill(masks.expand_as(stack), float("nan")).nanmedian(dim=0).values
    return torch.where(torch.isnan(masked), stack.median(dim=0).values, masked).round().to(torch.uint8)


def _fit_scene(
    frames: list[torch.Tensor],
    boxes: list[np.ndarray],
    config: GridConfig,
    scene: SceneConfig,
    device: torch.device,
    salt: int,
    on_step: Callable[[int], None] | None,
) -> tuple[bytes, GridRecord]:
    background = _scene_background(frames, boxes)
    target = GridTarget(
        background.to(torch.float32) / 255,
        torch.zeros(background.shape[1:], dtype=torch.bool),
        config.object_psnr,
        config.background_psnr + scene.psnr_margin,
    )
    # The scene keeps every level (its bytes are shared by all its frames); frames keep box-only fine levels, so
    # their background is the scene's full-resolution one plus coarse corrections.
    config = config.replace(grid=config.grid.dense)
    fit = fit_grids(config.grid, [target], fit_settings(config, salt), device, on_step)[0]
    record = _record(background, np.zeros((0, 4)), fit, config)
    return grid_record.pack(record), record


def encode_sequence_frames(
    images: Sequence[Any], boxes_list: Sequence[Any], config: GridConfig | None = None, progress: bool = False
) -> tuple[dict[str, bytes], list[EncodedFrame]]:
    """Scene mode: scene records by id, and each frame's record with what it achieves as decoded with its scene.

    A scene background is fitted to the median of the next `config.scene.window` frames and serves every following
    frame it reproduces at `background_psnr` (outside the boxes; `SceneConfig.cut_psnr` when set); the first frame
    it does not reproduce starts the next scene. Each frame record names its scene and adds its latents to it.
    """
    config = config or GridConfig()
    scene_cfg = config.scene or SceneConfig()
    cut = config.background_psnr if scene_cfg.cut_psnr is None else scene_cfg.cut_psnr
    device = resolve_device(config.device)
    frames, boxes = _prepare(images, boxes_list)
    bar = ProgressBar(progress, len(frames))
    scenes: dict[str, bytes] = {}
    parsed: dict[str, GridRecord] = {}
    assigned: list[str] = []
    start = 0
    while start < len(frames):
        window = slice(start, start + scene_cfg.window)
        blob, rec = _fit_scene(
            frames[window], boxes[window], config, scene_cfg, device, len(scenes), bar.step(f"scene {len(scenes)}")
        )
        name = scene_id(blob)
        scenes[name], parsed[name] = blob, rec
        shared = to_uint8(packing.pack([rec])[0].render(device)[0]).cpu()
        end = start + 1  # a scene always takes its first frame, even when its own fit falls short
        while end < len(frames):
            outside = ~box_mask(boxes[end], shared.shape[1], shared.shape[2])
            if psnr(frames[end], shared, outside) < cut:
                break
            end += 1
        assigned += [name] * (end - start)
        start = end
    encoded: list[EncodedFrame | None] = [None] * len(frames)
    for name in scenes:
        members = [i for i, s in enumerate(assigned) if s == name]
        scene = parsed[name]
        latents, layers = grid_record.resolve(scene, None)
        latents = [t.to(torch.float32) for t in latents]
        synthesis = scene.synthesis or []
        base = SceneBase(
            latents, layers, [(synthesis[2 * i].scale, synthesis[2 * i + 1].scale) for i in range(len(layers))]
        )
        on_scene = (name, scene, base, parsed)
        step = bar.step(f"frames of {name}")
        tune = scene_cfg.frame_synthesis == "tune"
        # A scene may serve hundreds of frames: fitting them in calls of `fit_batch` keeps memory bounded.
        for first in range(0, len(members), scene_cfg.fit_batch):
            chunk = members[first : first + scene_cfg.fit_batch]
            measured = _fit_on_scene(frames, boxes, chunk, config, on_scene, tune, device, step)
            auto = scene_cfg.frame_synthesis == "auto"
            missed = [k for k, m in enumerate(measured) if auto and shortfall(m, config) > SHORTFALL_DB]
            if missed:
                retried = _fit_on_scene(frames, boxes, [chunk[k] for k in missed], config, on_scene, True, device, step)
                for k, m in zip(missed, retried):
                    if shortfall(m, config) < shortfall(measured[k], config):
                        measured[k] = m
            for i, m in zip(chunk, measured):
                encoded[i] = m
    bar.close()
    return scenes, encoded  # type: ignore[return-value]
