"""Fitting-speed benchmark of the "grid" preset: seconds per step with the fit's renderer against the decoder's.

Fits the same real frames in one process, once differentiating the decoder's `render` (the reference), once
`render_dense` (the default), and with `--compile` once more with the step under torch.compile (its compilation,
a two-step call, is timed apart); prints seconds per step, the speed-up and the PSNRs each fit reached, so a faster
fit is shown to reach the same quality.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from rinr_data import GridConfig
from rinr_data.codecs.grid.encoder import fit_settings
from rinr_data.codecs.grid.fit import GridFit, GridTarget, fit_grids
from rinr_data.codecs.grid.model import render
from rinr_data.core.frames import box_mask
from rinr_data.core.metrics import mse_to_psnr

from .common import SHARED_DATA, load_frames, machine


def region_psnrs(fit: GridFit, target: GridTarget) -> tuple[float, float]:
    """Object and background PSNR (dB) of a fit's float reconstruction (quantised latents, float synthesis)."""
    h, w = target.image.shape[1:]
    out = render(fit.layers, [lat[None, None].float() for lat in fit.latents], h, w)[0].clamp(0, 1)
    err = ((out - target.image) ** 2).mean(dim=0)
    inside = target.box_mask
    return mse_to_psnr(float(err[inside].mean())), mse_to_psnr(float(err[~inside].mean()))


def timed_fit(
    config: GridConfig, targets: list[GridTarget], dense: bool, compile: str = "off"
) -> tuple[float, list[GridFit]]:
    """Seconds per step of one stacked fit of `targets`, and its fits."""
    settings = replace(fit_settings(config), dense_render=dense, compile=compile)
    if compile == "on":
        start = time.perf_counter()
        fit_grids(config.grid, targets, replace(settings, steps=2))  # one noisy and one rounded step: both graphs
        print(f"torch.compile of the step: {time.perf_counter() - start:.1f} s (once per process and shape)")
    start = time.perf_counter()
    fits = fit_grids(config.grid, targets, settings)
    return (time.perf_counter() - start) / config.max_steps, fits


def main(argv: list[str] | None = None) -> int:
    """Fit with both renderers and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--data",
        type=Path,
        default=SHARED_DATA / "vtest-dev",
        help="dataset folder (default: ../shared/data/vtest-dev beside the checkout)",
    )
    p.add_argument("--frames", type=int, default=4, help="frames fitted together in one call")
    p.add_argument("--steps", type=int, default=60, help="fitting steps per run")
    p.add_argument("--scale", type=float, default=1.0, help="resize frames by this factor before fitting")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--compile", action="store_true", help="also fit with the step under torch.compile")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    config = GridConfig(max_steps=args.steps)
    images, boxes, _ = load_frames(args.data, args.frames)
    if args.scale != 1.0:
        size = [round(images[0].shape[1] * args.scale), round(images[0].shape[2] * args.scale)]
        images = [
            torch.nn.functional.interpolate(i[None].float(), size=size, mode="area")[0].round().to(torch.uint8)
            for i in images
        ]
        boxes = [b * args.scale for b in boxes]
    targets = [
        GridTarget(i.float() / 255, box_mask(b, i.shape[1], i.shape[2]), config.object_psnr, config.background_psnr)
        for i, b in zip(images, boxes)
    ]
    h, w = images[0].shape[1:]
    print(f"{len(targets)} frame(s) of {args.data.name} at {w}x{h}, {args.steps} steps each run; {machine()}")
    rows = []
    modes = [("render (reference)", False, "off"), ("render_dense", True, "off")]
    modes += [("render_dense, compiled", True, "on")] if args.compile else []
    for name, dense, compile in modes:
        seconds, fits = timed_fit(config, targets, dense, compile)
        psnrs = [region_psnrs(f, t) for f, t in zip(fits, targets)]
        objects = sum(o for o, _ in psnrs) / len(psnrs)
        background = sum(b for _, b in psnrs) / len(psnrs)
        rows.append((name, seconds, objects, background))
    print("| renderer | s/step | speed-up | object PSNR (dB) | background PSNR (dB) |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, objects, background in rows:
        print(f"| {name} | {seconds:.3f} | {rows[0][1] / seconds:.2f}x | {objects:.2f} | {background:.2f} |")
    return 0
