#!/usr/bin/env python3
"""Demo: encode the committed sample frames to Residual-INR records, decode them in one batch, report bytes and PSNR.

Runs in about a minute on 2 CPU cores with the default (fast) settings; pass --max-steps for better quality.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import rinr_data as R
from rinr_data.classic import cheapest_quality
from rinr_data.frames import box_mask
from rinr_data.sources import load_sample, open_source

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Encode, decode and print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "vtest-dev")
    p.add_argument("--max-steps", type=int, default=300, help="fitting steps per INR (quality vs time)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "demo", help="where decoded PNGs are written")
    args = p.parse_args(argv)

    loaded = [load_sample(item) for item in open_source(args.data).items]
    images, boxes, names = [s.image for s in loaded], [s.boxes for s in loaded], [s.item.source for s in loaded]
    config = R.CodecConfig(max_steps=args.max_steps, eval_every=50, device=args.device)
    print(f"Encoding {len(images)} frames of {args.data.name} ({images[0].shape[1]}x{images[0].shape[0]}) with preset "
          f"'{config.preset}', {config.max_steps} steps, targets object {config.object_psnr} dB / background "
          f"{config.background_psnr} dB, on {R.devices.resolve_device(config.device)}", flush=True)
    t = time.perf_counter()
    frames = R.encode_frames(images, boxes, config, progress=True)
    encode_s = time.perf_counter() - t
    blobs = [f.blob for f in frames]
    t = time.perf_counter()
    decoded = R.decode_batch(blobs, device=config.device)
    decode_ms = (time.perf_counter() - t) * 1000 / len(blobs)

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"\n{'frame':<16}{'boxes':>6}{'rinr B':>9}{'JPEG B':>9}{'ratio':>7}{'full dB':>9}{'object dB':>10}{'bg dB':>8}")
    totals = [0, 0]
    for name, img, fr, dec in zip(names, images, frames, decoded):
        Image.fromarray(dec.cpu().permute(1, 2, 0).numpy()).save(args.out / Path(name).with_suffix(".png").name)
        chw = torch.from_numpy(img).permute(2, 0, 1)
        mask = box_mask(fr.boxes, chw.shape[1], chw.shape[2]) if len(fr.boxes) else None
        match = cheapest_quality(chw, "jpeg", fr.object_psnr if mask is not None else fr.full_psnr, mask=mask)
        jpeg = len(match[1]) if match else float("nan")
        totals[0] += len(fr.blob)
        totals[1] += jpeg
        print(f"{name:<16}{len(fr.boxes):>6}{len(fr.blob):>9,}{jpeg:>9,}{jpeg / len(fr.blob):>7.2f}"
              f"{fr.full_psnr:>9.2f}{fr.object_psnr:>10.2f}{fr.background_psnr:>8.2f}")
    print(f"{'total':<16}{'':>6}{totals[0]:>9,}{totals[1]:>9,}{totals[1] / totals[0]:>7.2f}")
    print(f"\nJPEG B = full-frame JPEG at the cheapest quality matching the record's object PSNR.")
    print(f"encode {encode_s / len(blobs):.1f} s/frame, batched decode {decode_ms:.1f} ms/frame; "
          f"decoded frames in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
