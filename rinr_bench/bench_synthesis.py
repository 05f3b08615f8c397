"""Decode-only synthesis benchmark: the latent-grid render, PyTorch reference against the fused Triton kernel.

Random latents and synthesis weights of one grid shape (default GridShape(levels=6, hidden=(16, 16)), the codec's)
at each frame size and batch size; nothing is read or entropy-decoded, so this is the render alone. For each path:
ms per batch, frames/s, GMAC/s achieved (GridShape.macs_per_pixel x pixels / time: 16 bicubic taps per level plus
the MLP, padding not counted) and its share of the GPU's FP32 FMA roofline

    peak MAC/s = SMs x FP32 cores per SM x SM clock   (one FMA per core per cycle; from torch's device properties)

and the GB/s of the least traffic a render needs (latents read once, float RGB written once) against the memory
roofline (2 x memory clock x bus width / 8). The fused kernel's largest |difference| from the reference and in
uint8 levels is printed beside it. On a CPU only the reference runs (Triton's interpreter is no benchmark);
`--quick` is a seconds-long smoke run.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any, Callable

import torch

from rinr_data.codecs.grid import fused, model
from rinr_data.codecs.grid.model import GridShape, init_layers
from rinr_data.core.devices import resolve_device
from rinr_data.core.frames import to_uint8

from .common import machine

# FP32 cores per SM by compute capability (CUDA programming guide, "Arithmetic Instructions"); newer parts: 128.
FP32_CORES_PER_SM = {(6, 0): 64, (7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64}


def make_inputs(
    shape: GridShape, frames: int, height: int, width: int, device: torch.device, seed: int = 0
) -> tuple[model.Layers, list[torch.Tensor]]:
    """Random synthesis weights (He-uniform, small random biases) and integer-valued latents of `frames` frames."""
    g = torch.Generator().manual_seed(seed)
    layers = [
        (w, b + 0.05 * torch.randn(b.shape, generator=g)) for w, b in init_layers(shape, frames, g, torch.device("cpu"))
    ]
    latents = [
        torch.randint(-6, 7, (frames, 1, h, w), generator=g).float() * 0.15 for h, w in shape.level_sizes(height, width)
    ]
    return [(w.to(device), b.to(device)) for w, b in layers], [t.to(device) for t in latents]


def reference(layers: model.Layers, latents: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """The PyTorch path of `model.render`, whatever RINR_FUSED says."""
    return model.synthesize(layers, model.upsample(latents, height, width))


def seconds_per_call(fn: Callable[[], Any], device: torch.device, repeat: int, warmup: int) -> float:
    """Mean wall time of `fn` over `repeat` calls after `warmup` (the first fused call compiles the kernel)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeat


def rooflines(device: torch.device) -> dict[str, Any] | None:
    """Peak FP32 GMAC/s and memory GB/s of a CUDA device from its properties (None on a CPU)."""
    if device.type != "cuda":
        return None
    p = torch.cuda.get_device_properties(device)
    cores = FP32_CORES_PER_SM.get((p.major, p.minor), 128)
    clock_khz = getattr(p, "clock_rate", 0)  # the SM clock the driver reports (boost), in kHz
    mem_khz, bus_bits = getattr(p, "memory_clock_rate", 0), getattr(p, "memory_bus_width", 0)
    return {
        "sms": p.multi_processor_count,
        "cores_per_sm": cores,
        "clock_ghz": clock_khz / 1e6,
        "peak_gmac_s": p.multi_processor_count * cores * clock_khz / 1e6,
        "peak_gb_s": 2 * mem_khz * 1e3 * bus_bits / 8 / 1e9,
    }


def min_bytes(shape: GridShape, frames: int, height: int, width: int) -> int:
    """Bytes a render cannot avoid moving: every latent read once, float RGB written once (weights negligible)."""
    latents = sum(h * w for h, w in shape.level_sizes(height, width))
    return 4 * frames * (latents + shape.out_features * height * width)


def _size(text: str) -> tuple[int, int]:
    """Frame size "WxH" as (height, width)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def measure(
    shape: GridShape,
    frames: int,
    height: int,
    width: int,
    device: torch.device,
    use_fused: bool,
    repeat: int,
    warmup: int,
    roof: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """One row per path for one frame size and batch: time, throughput, rooflines, difference from the reference."""
    layers, latents = make_inputs(shape, frames, height, width, device)
    paths = {"reference": functools.partial(reference, layers, latents, height, width)}
    if use_fused:
        paths["fused"] = functools.partial(fused.render_fused, layers, latents, height, width)
    with torch.no_grad():
        ref_out = paths["reference"]()
        rows = []
        for name, fn in paths.items():
            diff, levels = 0.0, 0
            if name != "reference":
                out = fn()
                diff = float((out - ref_out).abs().max())
                levels = int((to_uint8(out).int() - to_uint8(ref_out).int()).abs().max())
                del out
            sec = seconds_per_call(fn, device, repeat, warmup)
            gmacs = shape.macs_per_pixel * frames * height * width / sec / 1e9
            gbs = min_bytes(shape, frames, height, width) / sec / 1e9
            rows.append(
                {
                    "frames": frames,
                    "size": f"{width}x{height}",
                    "path": name,
                    "ms_per_batch": sec * 1000,
                    "frames_s": frames / sec,
                    "gmac_s": gmacs,
                    "fma_peak_pct": 100 * gmacs / roof["peak_gmac_s"] if roof and roof["peak_gmac_s"] else None,
                    "gb_s": gbs,
                    "mem_peak_pct": 100 * gbs / roof["peak_gb_s"] if roof and roof["peak_gb_s"] else None,
                    "max_abs_diff": diff,
                    "max_uint8_diff": levels,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Time both paths at every size and batch, print a markdown table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="384x288,640x640", help="comma-separated frame sizes, WxH")
    p.add_argument("--batches", default="16,64", help="comma-separated frames per render call (one shape group)")
    p.add_argument("--levels", type=int, default=6)
    p.add_argument("--hidden", default="16,16", help="comma-separated hidden widths of the synthesis MLP")
    p.add_argument("--repeat", type=int, default=20, help="timed calls per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (the fused kernel compiles in the first)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="a smoke run: 64x48 frames, batch 2, 2 timed calls")
    p.add_argument(
        "--interpreter",
        action="store_true",
        help="on a CPU with TRITON_INTERPRET=1, run the fused path too (checks it; its times mean nothing)",
    )
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.repeat, args.warmup = "64x48", "2", 2, 1

    device = resolve_device(args.device)
    shape = GridShape(levels=args.levels, hidden=tuple(int(v) for v in args.hidden.split(",") if v))
    roof = rooflines(device)
    # Under Triton's interpreter the fused row times Python, not a kernel: only with --interpreter, to check the path.
    use_fused = fused.available(device) and (device.type == "cuda" or args.interpreter)
    print(f"Synthesis benchmark on {machine(device)}")
    print(f"shape: {shape.levels} levels, hidden {shape.hidden}, {shape.macs_per_pixel} MACs per pixel")
    if roof:
        print(
            f"FMA roofline: {roof['sms']} SMs x {roof['cores_per_sm']} FP32 cores/SM x {roof['clock_ghz']:.3f} GHz = "
            f"{roof['peak_gmac_s']:.0f} GMAC/s; memory roofline {roof['peak_gb_s']:.0f} GB/s"
        )
    else:
        print("no GPU: the reference path only (no roofline)")
    if not use_fused:
        print("fused kernel: not run (needs Triton and a CUDA device)")
    elif device.type != "cuda":
        print("fused kernel under Triton's interpreter: its times are not the kernel's")
    print()
    head = "| frames | WxH | path | ms / batch | frames/s | GMAC/s | % FMA peak | GB/s | % mem peak | max abs diff |"
    print(head)
    print("|---" * head.count(" | ") + "|---|")
    rows = []
    for size in args.sizes.split(","):
        height, width = _size(size)
        for frames in (int(b) for b in args.batches.split(",")):
            for row in measure(shape, frames, height, width, device, use_fused, args.repeat, args.warmup, roof):
                rows.append(row)
                pct = f"{row['fma_peak_pct']:.1f}" if row["fma_peak_pct"] is not None else "-"
                mem = f"{row['mem_peak_pct']:.1f}" if row["mem_peak_pct"] is not None else "-"
                diff = f"{row['max_abs_diff']:.2e} ({row['max_uint8_diff']} uint8)" if row["path"] == "fused" else "-"
                print(
                    f"| {frames} | {row['size']} | {row['path']} | {row['ms_per_batch']:.2f} | {row['frames_s']:.1f} "
                    f"| {row['gmac_s']:.1f} | {pct} | {row['gb_s']:.1f} | {mem} | {diff} |"
                )
            if device.type == "cuda":
                torch.cuda.empty_cache()
    by_config = {(r["size"], r["frames"], r["path"]): r for r in rows}
    for (size, frames, path), row in by_config.items():
        if path == "fused":
            speedup = by_config[(size, frames, "reference")]["ms_per_batch"] / row["ms_per_batch"]
            print(f"{size}, {frames} frames: fused {speedup:.2f}x the reference's frames/s")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(device), "roofline": roof, "rows": rows}, indent=1))
    return 0
