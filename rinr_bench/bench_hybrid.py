"""Which region of a codec's frames costs detector accuracy? Train on frames that mix decoded and original pixels.

Takes training shards of any codec (RINR, JPEG, ...) and lossless shards of the same frames (bench_accuracy's
`original-*` folder: same keys, same order), writes one lossless shard set per mix and trains bench_accuracy's
detector on each from the same seeds, evaluated on the original validation frames:

  codec               every pixel as the codec decodes it (the control: matches bench_accuracy's run of the shards)
  boxes-original      original pixels inside the boxes, the codec's outside
  boxes-codec         the codec's pixels inside the boxes, original outside
  ring-original:PX    original pixels up to PX pixels outside the boxes (the ring), the codec's everywhere else

A mix that recovers what `codec` loses against the originals points at the region to fix. Prints one line per run
and a markdown table (mean over the seeds) to paste under the bench_accuracy section the shards came from.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from lightning_modules.data import JPEGDataModule
from rinr_data import shards
from rinr_data.cli.decode import decoded_samples
from rinr_data.core.frames import box_mask, grow_mask

from .bench_accuracy import detector_settings
from .compare import encode_lossless
from .experiment import train_and_evaluate

MIXES = ("codec", "boxes-original", "boxes-codec", "ring-original:PX")


def mix(name: str, original: torch.Tensor, decoded: torch.Tensor, boxes: list) -> torch.Tensor:
    """One mix (MIXES, `ring-original:4` style) of two uint8 [3, H, W] frames of the same boxes."""
    inside = box_mask(boxes, *original.shape[1:])
    if name == "codec":
        take_original = torch.zeros_like(inside)
    elif name == "boxes-original":
        take_original = inside
    elif name == "boxes-codec":
        take_original = ~inside
    elif name.startswith("ring-original:"):
        take_original = grow_mask(inside, int(name.partition(":")[2])) & ~inside
    else:
        raise ValueError(f"unknown mix {name!r}; valid: {', '.join(MIXES)}")
    return torch.where(take_original[None], original, decoded)


def write_mix(name: str, codec: Path, original: Path, out: Path) -> Path:
    """Lossless WebP shards of one mix, with the originals' sample JSON and a manifest; kept for re-runs."""
    if (out / shards.MANIFEST).exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    manifest = shards.read_manifest(original)
    infos = []
    # strict: a codec folder with more or fewer samples than the originals is not the same frames
    pairs = zip(decoded_samples([original]), decoded_samples([codec]), strict=True)
    per_shard = manifest["shard_size"]
    batch: list[shards.ShardSample] = []
    for (key, orig, meta), (other_key, dec, _) in pairs:
        if key != other_key or orig.shape != dec.shape:
            raise ValueError(f"{codec} and {original} differ at sample {key!r} / {other_key!r}: not the same frames")
        image = mix(name, orig, dec, meta["boxes"]).permute(1, 2, 0).numpy()
        batch.append(shards.ShardSample(key, "webp", encode_lossless(np.ascontiguousarray(image)), meta))
        if len(batch) == per_shard:
            infos.append(shards.write_shard(out, shards.shard_name("shard", len(infos)), batch))
            batch = []
    if batch:
        infos.append(shards.write_shard(out, shards.shard_name("shard", len(infos)), batch))
    manifest.update(shards=[info.manifest_entry() for info in infos], created_by=f"bench_hybrid {name}")
    shards.write_manifest(out, manifest)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codec", type=Path, help="training shards of the codec under test (folder with manifest.json)")
    p.add_argument("original", type=Path, help="lossless shards of the same frames (bench_accuracy's original-*)")
    p.add_argument("val", type=Path, help="original validation shards (bench_accuracy's val-*)")
    p.add_argument(
        "--mixes",
        default="codec,boxes-original,boxes-codec,ring-original:4",
        help=f"comma-separated, from {', '.join(MIXES)} (default: %(default)s)",
    )
    p.add_argument("--seeds", default="0,1", help="comma-separated paired seeds (default: %(default)s)")
    p.add_argument("--steps", type=int, default=300, help="detector steps per run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="detector batch (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="detector AdamW peak learning rate (default: %(default)s)")
    p.add_argument("--work", type=Path, default=None, help="folder for the mixed shards (default: CODEC-hybrid)")
    args = p.parse_args(argv)
    args.mixes = [m.strip() for m in args.mixes.split(",") if m.strip()]
    for name in args.mixes:  # fail before any shard is written
        try:
            mix(name, torch.zeros(3, 2, 2, dtype=torch.uint8), torch.zeros(3, 2, 2, dtype=torch.uint8), [])
        except ValueError as exc:
            p.error(f"--mixes: {exc}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.work = args.work or args.codec.with_name(args.codec.name + "-hybrid")
    return args


def main(argv: list[str] | None = None) -> int:
    """Write every mix, train each seed on it, print the runs and the table."""
    args = parse_args(argv)
    # bench_accuracy's detector settings, so the `codec` mix reproduces its run of the same shards.
    settings = detector_settings(args.steps, args.batch_size, args.lr, augment=True, progress=False)
    runs: dict[str, list] = {}
    for name in args.mixes:
        folder = write_mix(name, args.codec, args.original, args.work / name.replace(":", "-"))
        for seed in args.seeds:
            run = train_and_evaluate(JPEGDataModule, folder, args.val, settings, seed)
            run.model = None
            runs.setdefault(name, []).append(run)
            print(
                f"seed {seed} {name:<18}: mAP@0.5 {run.map_50:.3f}, mAP {run.map:.3f}, precision "
                f"{run.precision:.2f}, recall {run.recall:.2f}, FP/frame {run.fp_per_image:.2f}",
                flush=True,
            )
    print(
        f"\n`tools/bench_hybrid.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n\n"
        "| mix | mAP@0.5 per seed | mAP@0.5 | mAP@[.5:.95] | FP per frame |\n|---|---|---|---|---|"
    )
    for name, rs in runs.items():
        print(
            f"| {name} | {', '.join(f'{r.map_50:.3f}' for r in rs)} | {statistics.fmean(r.map_50 for r in rs):.3f} "
            f"| {statistics.fmean(r.map for r in rs):.3f} | {statistics.fmean(r.fp_per_image for r in rs):.2f} |"
        )
    return 0
