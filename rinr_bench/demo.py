"""Demo: the committed sample frames as RINR shards and as stock-codec shards, a detector trained briefly on each.

Splits tests/data/vtest-demo (48 real frames, COCO) by frame index into training and validation frames, encodes the
training frames to RINR shards, to JPEG shards at the cheapest quality whose object PSNR matches the RINR ones, and to
JPEG and AVIF shards at the highest quality that spends no more bytes per frame than RINR (all with
rinr_data.convert.encode_dataset), stores the validation frames losslessly, trains the tiny CenterNet on each
(RINRDataModule, JPEGDataModule) from the same seed, evaluates every model on the original validation frames and
prints one table. The defaults fit in about 10 minutes on 2 CPU cores; more steps give better numbers on a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from lightning_modules.data import JPEGDataModule, RINRDataModule
from lightning_modules.detection_metrics import OPERATING_THRESHOLD
from rinr_data import PRESETS, SceneConfig, codecs
from rinr_data.codecs.grid.config import SCENE_DEFAULTS
from rinr_data.convert import SCENE_MODES, ConvertConfig, encode_dataset
from rinr_data.core.devices import resolve_device
from rinr_data.sources import load_sample, open_source

from .common import ROOT, codec_config, preset_default
from .compare import QualityScan, load_samples, shard_stats, split_source, write_lossless_shards
from .experiment import TrainSettings, loader_speed, train_and_evaluate

# Sized for the 10-minute budget on 2 CPU cores at the demo's 192x144 (measured in docs/BENCHMARKS.md).
DEMO_FIT_STEPS = {"grid": 400, "paper": 1000}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The demo's options; defaults are sized for 2 CPU cores."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "vtest-demo", help="COCO/VOC/YOLO folder")
    p.add_argument("--train-frames", type=int, default=36, help="first N frames train (default: %(default)s)")
    p.add_argument("--val-frames", type=int, default=12, help="last N frames validate (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=192, help="downscale frames to this longer side (0: keep)")
    p.add_argument("--preset", default=codecs.DEFAULT, choices=PRESETS, help="RINR preset (default: %(default)s)")
    p.add_argument(
        "--fit-steps",
        type=int,
        default=None,
        help=f"INR fitting step budget (default: {DEMO_FIT_STEPS}; the presets' own defaults are "
        + ", ".join(f"{p} {preset_default(p, 'max_steps')}" for p in PRESETS)
        + ")",
    )
    p.add_argument("--object-psnr", type=float, help="RINR object PSNR target in dB (default: the preset's)")
    p.add_argument("--background-psnr", type=float, help="RINR background PSNR target in dB (default: the preset's)")
    p.add_argument(
        "--box-levels",
        type=int,
        help="grid preset: at most N box-only latent levels (default: the preset's; 0 with targets 30/30 "
        "is the setting that trains detectors within 0.02 mAP of JPEG, docs/BENCHMARKS.md)",
    )
    p.add_argument(
        "--pixels-per-step",
        type=int,
        default=2048,
        help="paper preset: pixels sampled per INR and fitting step (default: %(default)s)",
    )
    p.add_argument(
        "--train-steps", type=int, default=150, help="detector optimizer steps per codec (default: %(default)s)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scene",
        choices=SCENE_MODES,
        default="off",
        help="'auto': grid scene mode (static camera): the training frames share one scene background "
        "record, with scene mode's quality defaults (rinr-encode --scene auto) (default: %(default)s)",
    )
    p.add_argument(
        "--scene-cut",
        type=float,
        default=20.0,
        help="with --scene auto: a frame its scene reproduces below this PSNR (dB) outside its boxes "
        "starts a new scene (default: %(default)s)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto: INR fitting, decode and training")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, help="keep the shards in this (new or empty) folder; default: a temp folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Encode, train, evaluate, print the table."""
    args = parse_args(argv)
    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    print(
        f"Machine: {cores} cores, load average {load:.1f} at start, {torch.get_num_threads()} torch threads"
        + (" - busy: other jobs slow every timing below" if load > cores / 2 else ""),
        flush=True,
    )
    device = resolve_device(args.device)
    max_side = args.max_side or None
    source = open_source(args.data)
    train_src, val_src = split_source(source, args.train_frames, args.val_frames)
    n_train, n_val, n = len(train_src.items), len(val_src.items), len(source.items)
    orig, first = load_sample(source.items[0]), load_sample(source.items[0], max_side=max_side)
    print(
        f"Data: {args.data.name} ({source.format}, classes {source.classes}), {n} frames; frames 0-{n_train - 1} "
        f"train, {n - n_val}-{n - 1} validate (split by frame index); {orig.width}x{orig.height} -> "
        f"{first.width}x{first.height}" + (f" (max_side {max_side})" if max_side else ""),
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="rinr-demo-") as tmp:
        out = args.out or Path(tmp)
        if args.out and args.out.exists() and any(args.out.iterdir()):
            raise SystemExit(f"--out {args.out} is not empty; give a new folder")
        quiet = {"progress": False, "log": lambda message: print(message, file=sys.stderr)}

        targets = {
            k: v
            for k, v in (("object_psnr", args.object_psnr), ("background_psnr", args.background_psnr))
            if v is not None
        }
        # Scene settings go to the grid preset only; ConvertConfig below refuses scene mode for any other. Scene
        # mode has quality defaults of its own, as in rinr-encode.
        scene_config = SceneConfig(cut_psnr=args.scene_cut) if args.scene == "auto" else None
        if scene_config is not None:
            targets = {**{k: SCENE_DEFAULTS[k] for k in ("object_psnr", "background_psnr")}, **targets}
        codec = codec_config(
            args.preset,
            max_steps=args.fit_steps or DEMO_FIT_STEPS[args.preset],
            pixels_per_step=args.pixels_per_step,
            seed=args.seed,
            device=str(device),
            scene=scene_config,
            **targets,
        )
        if scene_config is not None and hasattr(codec, "with_grid"):
            codec = codec.with_grid(box_margin=SCENE_DEFAULTS["box_margin"])
        if args.box_levels is not None:
            if args.preset != "grid":
                raise SystemExit(f"--box-levels: applies to the grid preset only, not {args.preset!r}")
            try:
                codec = codec.with_grid(box_levels=args.box_levels)
            except ValueError as exc:
                raise SystemExit(f"--box-levels: {exc}") from None
        t = time.perf_counter()
        try:
            rinr_config = ConvertConfig(
                codec_config=codec, max_side=max_side, batch=n_train, shard_size=n_train, scene=args.scene
            )
        except ValueError as exc:
            raise SystemExit(f"--scene: {exc}") from None
        encode_dataset(train_src, out / "rinr", rinr_config, **quiet)
        encode_s = time.perf_counter() - t
        rinr = shard_stats(out / "rinr")
        per_step = (
            f", at most {codec.grid.box_levels} box-only levels"
            if codec.preset == "grid"
            else f" of {codec.pixels_per_step} pixels"
        )
        scene = f", scene mode (new scene below {args.scene_cut:g} dB)" if args.scene == "auto" else ""
        print(
            f"RINR: preset '{codec.preset}' (targets: objects {codec.object_psnr:g} dB, background "
            f"{codec.background_psnr:g} dB), {codec.max_steps} fitting steps{per_step}, {n_train} frames per "
            f"fitting call{scene}, on {device}: {encode_s:.0f} s",
            flush=True,
        )

        samples = load_samples(train_src, max_side=max_side)
        scans = {name: QualityScan(samples, codec=name) for name in ("jpeg", "avif")}
        match = scans["jpeg"].at_object_psnr(rinr.object_psnr) or scans["jpeg"](100)
        # The stock codecs a user could ship instead: JPEG as good in the boxes, and JPEG / AVIF as cheap.
        same_bytes = {name: scan.at_bytes(rinr.bytes_per_frame) for name, scan in scans.items()}
        baselines = [(f"JPEG q{match.quality}", "jpeg", match.quality, "same object PSNR")]
        baselines += [(f"{name.upper()} q{p.quality}", name, p.quality, "same bytes") for name, p in same_bytes.items()]
        stats = {}
        for label, name, quality, _ in baselines:
            folder = out / f"{name}-q{quality}"
            if not folder.exists():
                config = ConvertConfig(codec=name, quality=quality, max_side=max_side, shard_size=n_train)
                encode_dataset(train_src, folder, config, **quiet)
            stats[label] = (folder, shard_stats(folder))
        cheap = ", ".join(f"{name.upper()} q{p.quality}" for name, p in same_bytes.items())
        print(
            f"Stock codecs: JPEG q{match.quality}, the cheapest whose mean object PSNR reaches RINR's "
            f"({rinr.object_psnr:.2f} dB); {cheap}, the best within RINR's bytes per frame",
            flush=True,
        )
        write_lossless_shards(val_src, out / "val", max_side=max_side)

        settings = TrainSettings(
            steps=args.train_steps,
            batch_size=args.batch_size,
            warmup_steps=args.train_steps // 5,
            accelerator="gpu" if device.type == "cuda" else "cpu",
        )
        print(
            f"Detector: tiny CenterNet from scratch, {settings.steps} steps x {settings.batch_size} frames "
            f"(augmented), seed {args.seed}, on {device}; evaluated on the "
            f"{n_val} validation frames stored losslessly",
            flush=True,
        )
        rows = []
        runs = [("RINR", RINRDataModule, out / "rinr", rinr)]
        runs += [(f"{label} ({why})", JPEGDataModule, *stats[label]) for label, _, _, why in baselines]
        for name, module, folder, shard in runs:
            speed = loader_speed(module, folder, settings, args.seed, device)
            run = train_and_evaluate(module, folder, out / "val", settings, args.seed)
            print(
                f"  {name}: loader {speed:.1f} img/s, trained in {run.train_s:.0f} s, mAP@0.5 {run.map_50:.3f}",
                flush=True,
            )
            rows.append((name, shard, speed, run))
        if args.out:
            print(f"Shards kept in {args.out}")

    print()
    print(
        "| shards | bytes/frame | object PSNR dB | background PSNR dB | loader img/s | train s | mAP@0.5 | "
        f"mAP@[.5:.95] | precision / recall / false alarms per frame at score {OPERATING_THRESHOLD:g} |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, stats, speed, run in rows:
        print(
            f"| {name} | {stats.bytes_per_frame:,.0f} | {stats.object_psnr:.2f} | {stats.background_psnr:.2f} | "
            f"{speed:.1f} | {run.train_s:.0f} | {run.map_50:.3f} | {run.map:.3f} | "
            f"{run.precision:.2f} / {run.recall:.2f} / {run.fp_per_image:.2f} |"
        )
    ratio = rows[1][1].bytes_per_frame / rinr.bytes_per_frame
    gaps = ", ".join(f"{name} {run.map_50 - rows[0][3].map_50:+.3f}" for name, _, _, run in rows[2:])
    print(
        f"\nJPEG at the same object PSNR takes {ratio:.2f}x the bytes of RINR. mAP@0.5 at RINR's bytes, against "
        f"RINR's (one seed; seeds move it by a few hundredths): {gaps}. Loader img/s: one training epoch "
        f"through the data module (decode on {device}, augmentation), no model. Train s: {settings.steps} steps, "
        f"decode included. Total demo time {time.perf_counter() - start:.0f} s."
    )
    return 0
