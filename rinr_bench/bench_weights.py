"""Weight-coding study: PSNR lost to quantisation per bit allocation, and bytes/decode time per entropy coder.

Fits the paper preset's background INR of real frames at near-float precision (16-bit), then re-quantises the same
weights with each candidate allocation and codes the integers with each coder. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rinr_data import PaperConfig
from rinr_data.codecs.paper.fitting import FitSettings, FitTarget, fit_sirens
from rinr_data.codecs.paper.siren import render
from rinr_data.codecs.paper.weights import QuantizedINR, stack_params, tensor_bits
from rinr_data.core.metrics import mse_to_psnr
from rinr_data.format import entropy
from rinr_data.format.quantize import quantize_tensor

from .common import SHARED_DATA, load_frames


def requantize(inr: QuantizedINR, first_bits: int, bits: int) -> QuantizedINR:
    """The same weights under another bit allocation."""
    allocation = tensor_bits(inr.shape, bits, first_bits)
    return QuantizedINR(inr.shape, [quantize_tensor(t.dequantize(), b) for t, b in zip(inr.tensors, allocation)])


def psnr_of(inr: QuantizedINR, image: torch.Tensor, w0: float) -> float:
    """Full-frame PSNR of an INR's reconstruction (float, before uint8 rounding)."""
    h, w = image.shape[1:]
    out = render(stack_params([inr]), [(h, w)], w0)[0].clamp(0, 1)
    ref = image.float().div(255).permute(1, 2, 0).reshape(-1, 3)
    return mse_to_psnr(float(((out - ref) ** 2).mean()))


def main(argv: list[str] | None = None) -> int:
    """Run the study and print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=SHARED_DATA / "vtest-dev")
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--steps", type=int, default=1500)
    args = p.parse_args(argv)

    images = load_frames(args.data, args.frames)[0]
    cfg = PaperConfig()
    settings = FitSettings(
        target_psnr=99,
        max_steps=args.steps,
        lr=cfg.lr,
        pixels_per_step=cfg.pixels_per_step,
        eval_every=args.steps,
        w0=cfg.w0,
        weight_bits=16,
        first_layer_bits=16,
        seed=0,
    )
    targets = [FitTarget(i.shape[1], i.shape[2], i.float().div(255).permute(1, 2, 0).reshape(-1, 3)) for i in images]
    t = time.perf_counter()
    fits = fit_sirens(cfg.background, targets, settings)
    print(
        f"fitted {len(images)} background INR(s) ({cfg.background.num_params} params) for {args.steps} steps "
        f"in {time.perf_counter() - t:.0f} s on {platform.machine()}",
        file=sys.stderr,
    )
    rows = []
    for first_bits, bits in [(16, 16), (8, 8), (10, 8), (12, 8), (10, 7), (12, 6), (9, 9)]:
        drops, sizes, times = [], {c: [] for c in entropy.CODERS}, {c: [] for c in entropy.CODERS}
        for fit, image in zip(fits, images):
            ref = psnr_of(fit.inr, image, cfg.w0)
            q = requantize(fit.inr, first_bits, bits)
            drops.append(ref - psnr_of(q, image, cfg.w0))
            streams, allocation = [t.values for t in q.tensors], [t.bits for t in q.tensors]
            counts = [len(s) for s in streams]
            for coder in entropy.CODERS:
                data = entropy.compress(streams, allocation, coder)
                t0 = time.perf_counter()
                for _ in range(20):
                    entropy.decompress(data, counts, allocation, entropy.coder_id(coder))
                times[coder].append((time.perf_counter() - t0) / 20 * 1e3)
                sizes[coder].append(len(data))
        rows.append(
            f"| {first_bits} / {bits} | {np.mean(drops):.2f} | "
            + " | ".join(f"{np.mean(sizes[c]):,.0f} ({np.mean(times[c]):.2f} ms)" for c in entropy.CODERS)
            + " |"
        )
    print(
        f"Background INR {cfg.background.width}x{cfg.background.depth}, {args.frames} vtest-dev frame(s), "
        f"{args.steps} steps; PSNR drop vs 16-bit weights; bytes of the weight payload (entropy-decode time).\n"
    )
    print("| first-layer / other bits | PSNR drop dB | " + " | ".join(entropy.CODERS) + " |")
    print("|---|---|" + "---|" * len(entropy.CODERS))
    print("\n".join(rows))
    return 0
