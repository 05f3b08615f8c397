"""Codec benchmark: bytes, PSNR and speed of each preset against JPEG/WebP/AVIF and ROI baselines.

Reads the real evaluation sets (COCO vtest-dev, VOC aerial-voc), encodes them with rinr_data, matches every
baseline to the INR's own object and background PSNR, prints a table, saves an RD plot and rewrites the
generated section of docs/BENCHMARKS.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import rinr_data as R
from rinr_data import GridConfig, PaperConfig, codecs
from rinr_data.codecs.classic.pillow import quality_sweep
from rinr_data.codecs.grid.record import GridRecord, byte_budget
from rinr_data.core.frames import box_mask, box_region
from rinr_data.core.metrics import RegionDetail, region_detail, region_psnr

from .baselines import full_frame_at_psnr, full_frame_at_region_psnrs, roi_baseline
from .benchdoc import replace_section
from .common import ROOT, SHARED_DATA, codec_config, load_frames, machine


def markers(section: str) -> tuple[str, str]:
    """Begin/end markers of one generated section of docs/BENCHMARKS.md (one per preset and mode)."""
    return f"<!-- bench_codec:{section}:begin -->", f"<!-- bench_codec:{section}:end -->"


@dataclass
class FrameResult:
    """One frame's INR result and its baselines (bytes at the INR's quality)."""

    dataset: str
    name: str
    nbytes: int
    full: float
    objects: float
    background: float
    n_boxes: int
    baselines: dict[str, int | None] = field(default_factory=dict)
    budget: dict[str, float] | None = None  # grid records: codecs.grid.record.byte_budget (the record alone)
    box_levels: int | None = None  # grid records: the frame's box-only levels
    detail: tuple[float, float] = (math.nan, math.nan)  # fine detail of the decoded frame outside / inside its boxes


def time_decode(
    blobs: list[bytes], device: str, scenes: dict[str, bytes] | None = None, repeat: int = 3
) -> tuple[float, float]:
    """Milliseconds per frame for one-by-one decode and for one decode_batch of all blobs (best of `repeat`)."""

    def best(fn) -> float:
        times = []
        for _ in range(repeat):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return min(times) * 1000 / len(blobs)

    return (
        best(lambda: [R.decode(b, device, scenes) for b in blobs]),
        best(lambda: R.decode_batch(blobs, device, scenes)),
    )


def baseline_bytes(image: torch.Tensor, boxes: np.ndarray, objects: float, background: float) -> dict[str, int | None]:
    """Bytes of each classic baseline at the INR's object (and, for ROI and `jpeg-both`, background) PSNR."""
    mask = box_mask(boxes, image.shape[1], image.shape[2]) if len(boxes) else None
    target = objects if len(boxes) else background
    out: dict[str, int | None] = {}
    for codec in ("jpeg", "webp", "avif"):
        b = full_frame_at_psnr(image, codec, target, mask=mask)
        out[codec] = b.nbytes if b else None
    # Whole-frame JPEG at both of the record's qualities: what a uniform-quality record has to beat.
    both = full_frame_at_region_psnrs(image, "jpeg", boxes.tolist(), objects, background, mask=mask)
    out["jpeg-both"] = both.nbytes if both else None
    for codec in ("jpeg", "avif"):
        b = roi_baseline(image, boxes.tolist(), codec, objects, background) if len(boxes) else None
        out[f"roi-{codec}"] = b.nbytes if b else out[codec]
    return out


def macs(config: GridConfig | PaperConfig, boxes_per_frame: list[np.ndarray], sizes: list[tuple[int, int]]) -> float:
    """Decode MACs per output pixel: the grid's upsampling and synthesis, or ("paper") background everywhere plus
    each object INR over its box."""
    if config.preset == "grid":
        return float(config.grid.macs_per_pixel)
    total, pixels = 0, 0
    for boxes, (h, w) in zip(boxes_per_frame, sizes):
        total += config.background.macs_per_pixel * h * w
        pixels += h * w
        for box in boxes:
            r = box_region(box, h, w)
            total += config.object_shape(r.area).macs_per_pixel * r.area
    return total / pixels


def run_dataset(
    name: str, path: Path, config: GridConfig | PaperConfig, args: argparse.Namespace
) -> tuple[list[FrameResult], dict]:
    """Encode one dataset in batches, decode it, and match baselines."""
    images, boxes, names = load_frames(path, args.frames, args.consecutive)
    results, blobs = [], []
    scenes: dict[str, bytes] = {}
    t0 = time.perf_counter()
    if args.scene:
        # Scene mode: the whole sequence in one call; each frame carries its share of its scene's bytes.
        scenes, encoded = R.encode_sequence_frames(images, boxes, config, progress=not args.quiet)
        share = sum(len(b) for b in scenes.values()) / len(images)
        chunks = [(slice(0, len(images)), encoded, share)]
    else:
        chunks = []
        for start in range(0, len(images), args.batch):
            chunk = slice(start, start + args.batch)
            chunks.append((chunk, R.encode_frames(images[chunk], boxes[chunk], config, progress=not args.quiet), 0))
            print(f"  {name}: encoded {min(start + args.batch, len(images))}/{len(images)} frames", flush=True)
    for chunk, encoded, share in chunks:
        for enc, nm in zip(encoded, names[chunk]):
            blobs.append(enc.blob)
            results.append(
                FrameResult(
                    name,
                    nm,
                    round(len(enc.blob) + share),
                    enc.full_psnr,
                    enc.object_psnr,
                    enc.background_psnr,
                    len(enc.boxes),
                )
            )
            record = R.unpack_record(enc.blob)
            if isinstance(record, GridRecord):
                results[-1].budget, results[-1].box_levels = byte_budget(record), record.shape.box_levels
    encode_s = (time.perf_counter() - t0) / len(images)
    device = args.device if args.device != "auto" else config.device
    single_ms, batch_ms = time_decode(blobs, device, scenes)
    # The GPU figure means little without the CPU one beside it, from the same process and records.
    cpu_batch_ms = time_decode(blobs, "cpu", scenes)[1] if device != "cpu" else None
    decoded = R.decode_batch(blobs, scenes=scenes)
    for res, img, bx, dec in zip(results, images, boxes, decoded):
        q = region_psnr(img, dec, bx)
        # Fitted on a GPU, the encoder measured a GPU decode: a pixel may round to the next level on the CPU.
        tolerance = 1e-6 if device == "cpu" else 0.02
        assert abs(q.full - res.full) < tolerance, "decode_batch disagrees with the encoder's own measurement"
        res.baselines = baseline_bytes(img, bx, res.objects, res.background)
        detail = region_detail(dec.to(torch.float32) / 255, bx)
        res.detail = (detail.background, detail.objects)
    summary = dict(
        encode_s=encode_s,
        decode_single_ms=single_ms,
        decode_batch_ms=batch_ms,
        decode_cpu_ms=cpu_batch_ms,
        macs_per_pixel=macs(config, boxes, [tuple(i.shape[1:]) for i in images]),
        scenes=len(scenes),
        scene_bytes=sum(len(b) for b in scenes.values()),
        scene_budget=[byte_budget(R.unpack_record(b)) for b in scenes.values()],
    )
    return results, summary


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def cpu_note(summary: dict) -> str:
    """When decoding on a GPU: the CPU's batched decode of the same records, and how many times slower it is."""
    cpu = summary.get("decode_cpu_ms")
    return f" (CPU batched {cpu:.1f}, {cpu / summary['decode_batch_ms']:.1f}x)" if cpu else ""


def table(results: list[FrameResult], summaries: dict[str, dict], preset: str) -> str:
    """Markdown table: one row per dataset with mean bytes, PSNRs, speed and baseline ratios."""
    names = ["jpeg", "jpeg-both", "webp", "avif", "roi-jpeg", "roi-avif"]
    head = (
        "| dataset | preset | frames | bytes/frame | full dB | object dB | background dB | detail outside / inside "
        "boxes | encode s/frame | decode ms/frame (single / batched) | MACs/px | "
        + " | ".join(f"{n} bytes (x)" for n in names)
        + " |"
    )
    lines = [head, "|" + "---|" * (11 + len(names))]
    for ds, summ in summaries.items():
        rows = [r for r in results if r.dataset == ds]
        nbytes = _mean([r.nbytes for r in rows])
        cells = []
        for n in names:
            vals = [r.baselines.get(n) for r in rows]
            if any(v is None for v in vals):
                cells.append("unreached")
            else:
                b = _mean(vals)
                cells.append(f"{b:,.0f} ({b / nbytes:.2f}x)")
        pooled = RegionDetail(objects=_mean([r.detail[1] for r in rows]), background=_mean([r.detail[0] for r in rows]))
        ratio = f" ({pooled.ratio:.1f}x)" if math.isfinite(pooled.ratio) else ""
        lines.append(
            f"| {ds} | {preset} | {len(rows)} | {nbytes:,.0f} | {_mean([r.full for r in rows]):.2f} | "
            f"{_mean([r.objects for r in rows]):.2f} | {_mean([r.background for r in rows]):.2f} | "
            f"{pooled.background:.3f} / {pooled.objects:.3f}{ratio} | "
            f"{summ['encode_s']:.1f} | {summ['decode_single_ms']:.1f} / {summ['decode_batch_ms']:.1f}"
            f"{cpu_note(summ)} | "
            f"{summ['macs_per_pixel']:,.0f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def budget_lines(results: list[FrameResult], summaries: dict[str, dict]) -> str:
    """Where the grid records' bytes go, per dataset (mean per frame record; scene records apart)."""

    def fmt(budgets: list[dict[str, float]]) -> str:
        mean = {k: statistics.fmean(b[k] for b in budgets) for k in budgets[0]}
        return ", ".join(f"{k} {v:,.0f}" for k, v in mean.items())

    lines = []
    for ds, summ in summaries.items():
        rows = [r for r in results if r.dataset == ds and r.budget]
        if not rows:
            continue
        levels = ", ".join(f"{n} frame(s) {b}" for b, n in sorted(Counter(r.box_levels for r in rows).items()))
        lines.append(
            f"- {ds}: frame records (mean bytes) {fmt([r.budget for r in rows])}; box-only levels: {levels}"
            + (f"; scene records {fmt(summ['scene_budget'])}" if summ.get("scene_budget") else "")
        )
    return (
        (
            "Where the bytes go (`codecs.grid.record.byte_budget`: the coding models' code lengths; other = header, "
            "boxes, tables, coder flush):\n\n" + "\n".join(lines) + "\n"
        )
        if lines
        else ""
    )


def rd_plot(results: list[FrameResult], images_by_ds: dict[str, torch.Tensor], out: Path) -> None:
    """Full-frame PSNR vs bytes: classic codec sweeps on one frame per dataset plus the INR points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images_by_ds), figsize=(6 * len(images_by_ds), 4.5), squeeze=False)
    for ax, (ds, image) in zip(axes[0], images_by_ds.items()):
        for codec in ("jpeg", "webp", "avif"):
            sweep = quality_sweep(image, codec, [5, 10, 20, 30, 40, 50, 60, 70, 80, 90])
            ax.plot([s[1] for s in sweep], [s[2] for s in sweep], marker=".", label=codec)
        rows = [r for r in results if r.dataset == ds]
        ax.scatter([r.nbytes for r in rows], [r.full for r in rows], color="k", marker="x", label="rinr (all frames)")
        ax.set_xscale("log")
        ax.set_xlabel("bytes per frame")
        ax.set_ylabel("full-frame PSNR (dB)")
        ax.set_title(f"{ds} (codec curves: first frame)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def tradeoff_curve(path: Path, config: GridConfig | PaperConfig, steps_list: list[int], frames: int) -> str:
    """Markdown table of bytes and quality against fitting steps (encode time) on the first frames of a dataset.

    JPEG and ROI-AVIF are matched to each point's own PSNRs, since more steps change quality as well as bytes.
    """
    images, boxes, _ = load_frames(path, frames)
    lines = [
        "| max_steps | encode s/frame | bytes/frame | object dB | background dB | jpeg bytes (x) "
        "| roi-avif bytes (x) |",
        "|---|---|---|---|---|---|---|",
    ]
    for steps in steps_list:
        t = time.perf_counter()
        encoded = R.encode_frames(images, boxes, config.replace(max_steps=steps))
        per_frame = (time.perf_counter() - t) / len(images)
        ours = _mean([len(e.blob) for e in encoded])
        bases = [baseline_bytes(img, b, e.object_psnr, e.background_psnr) for img, b, e in zip(images, boxes, encoded)]
        cells = []
        for codec in ("jpeg", "roi-avif"):
            found = [x[codec] for x in bases if x[codec] is not None]
            cells.append(f"{_mean(found):,.0f} ({_mean(found) / ours:.2f}x)" if len(found) == len(bases) else "n/a")
        lines.append(
            f"| {steps} | {per_frame:.1f} | {ours:,.0f} | {_mean([e.object_psnr for e in encoded]):.2f} | "
            f"{_mean([e.background_psnr for e in encoded]):.2f} | {' | '.join(cells)} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def write_benchmarks(text: str, path: Path, section: str) -> None:
    """Replace one generated section of docs/BENCHMARKS.md (appended if missing)."""
    replace_section(path, *markers(section), text, heading=f"### `bench_codec.py`: {section}")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every dataset, print and record the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data",
        type=Path,
        default=SHARED_DATA,
        help="folder holding vtest-dev/ and aerial-voc/ (default: ../shared/data beside the checkout)",
    )
    p.add_argument("--datasets", default="vtest-dev,aerial-voc", help="comma-separated subfolders of --data")
    p.add_argument("--frames", type=int, default=8, help="frames per dataset, evenly spaced (0 = all)")
    p.add_argument(
        "--consecutive",
        action="store_true",
        help="take the first --frames frames instead of spreading them (scene mode on a dense sequence)",
    )
    p.add_argument("--preset", default=codecs.DEFAULT, choices=R.PRESETS)
    p.add_argument("--max-steps", type=int, default=None, help="fitting steps (default: the preset's)")
    p.add_argument("--object-psnr", type=float, default=None, help="object PSNR target (default: the preset's)")
    p.add_argument("--background-psnr", type=float, default=None, help="background PSNR target (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="weight learning rate (default: the preset's)")
    p.add_argument(
        "--box-levels",
        type=int,
        default=None,
        help=f"grid preset: most box-only levels per frame (default {GridConfig().grid.box_levels}; 0: "
        "every level everywhere, uniform-quality records)",
    )
    p.add_argument("--scene", action="store_true", help="scene mode (grid preset): frames share scene backgrounds")
    p.add_argument("--scene-window", type=int, default=32, help="frames per scene background median")
    p.add_argument(
        "--curve",
        default=None,
        metavar="STEPS,...",
        help="instead of the table: bytes and quality against these max_steps on the first dataset",
    )
    p.add_argument(
        "--section", default=None, help="name of the BENCHMARKS.md section to rewrite (default: preset, plus -scene)"
    )
    p.add_argument("--batch", type=int, default=8, help="frames per fitting call")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument(
        "--plot",
        type=lambda text: Path(text) if text else None,  # Path("") is ".", which has no stem to extend
        default=ROOT / "docs" / "bench_codec_rd.png",
        help="RD plot path; the section name is appended to its stem ('' for no plot)",
    )
    p.add_argument(
        "--write",
        default=str(ROOT / "docs" / "BENCHMARKS.md"),
        help="markdown file whose generated section is rewritten ('' to skip)",
    )
    p.add_argument("--json", type=Path, default=None, help="also dump per-frame results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    for flag, given in (("--scene", args.scene), ("--box-levels", args.box_levels is not None)):
        if given and args.preset != "grid":
            p.error(f"{flag} applies to the grid preset only")
    config = codec_config(
        args.preset,
        max_steps=args.max_steps,
        object_psnr=args.object_psnr,
        background_psnr=args.background_psnr,
        lr=args.lr,
        scene=R.SceneConfig(window=args.scene_window) if args.scene else None,
        device="cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device),
    )
    if args.box_levels is not None:
        try:
            config = config.with_grid(box_levels=args.box_levels)
        except ValueError as exc:
            p.error(f"--box-levels: {exc}")
    section = args.section or (config.preset + ("-scene" if args.scene else "") + ("-curve" if args.curve else ""))
    if args.curve:
        ds = args.datasets.split(",")[0]
        text = tradeoff_curve(args.data / ds, config, [int(v) for v in args.curve.split(",")], args.frames)
        report = (
            f"Measured by `tools/bench_codec.py --curve {args.curve}` on {machine()}, "
            f"{time.strftime('%Y-%m-%d')}: "
            f"preset `{config.preset}`, {args.frames} {ds} frame(s) fitted together, targets object "
            f"{config.object_psnr} / background {config.background_psnr} dB.\n\n{text}\n"
        )
        print(report)
        if args.write:
            write_benchmarks(report, Path(args.write), section)
        return 0
    results, summaries, first_images = [], {}, {}
    for ds in args.datasets.split(","):
        print(
            f"{ds}: encoding with preset {config.preset}, max_steps {config.max_steps} on {config.device}", flush=True
        )
        res, summ = run_dataset(ds, args.data / ds, config, args)
        results += res
        summaries[ds] = summ
        first_images[ds] = load_frames(args.data / ds, 1)[0][0]
    text = table(results, summaries, section)
    if config.preset == "grid":
        settings = (
            f"Settings: preset `grid` ({config.grid.levels} latent levels, synthesis "
            f"{'-'.join(map(str, (config.grid.levels, *config.grid.hidden, 3)))}, {config.weight_bits}-bit, "
            f"at most {config.grid.box_levels} box-only levels), "
            f"object_psnr {config.object_psnr}, background_psnr {config.background_psnr}, max_steps "
            f"{config.max_steps}, lr {config.lr}, latent lr {config.latent_lr}, device {config.device}"
            + (
                f"; scene mode, window {args.scene_window}: "
                + ", ".join(
                    f"{ds} {s['scenes']} scene(s), {s['scene_bytes']:,} scene bytes shared out over its frames"
                    for ds, s in summaries.items()
                )
                if args.scene
                else f", batch {args.batch}"
            )
            + "."
        )
    else:
        settings = (
            f"Settings: preset `{config.preset}`, object_psnr {config.object_psnr}, background_psnr "
            f"{config.background_psnr}, max_steps {config.max_steps}, batch {args.batch}, lr {config.lr}, "
            f"{config.pixels_per_step} pixels/step, {config.first_layer_bits}-bit first layer, "
            f"{config.weight_bits}-bit rest, entropy coder `{config.entropy_coder}`, device {config.device}."
        )
    report = (
        f"Measured by `tools/bench_codec.py` on {machine()}, {time.strftime('%Y-%m-%d')}.\n\n{settings}\n\n"
        f"Baseline bytes are for the cheapest quality reaching the INR's own PSNR on each frame (object PSNR "
        f"for full-frame codecs; object and background PSNR for ROI and `jpeg-both`, whole-frame JPEG); (x) = "
        f"baseline bytes / INR bytes, above 1 means the INR is smaller. Detail: mean absolute Laplacian of the "
        f"decoded frames ([0, 1] pixels) outside and inside the boxes, and inside / outside.\n\n{text}\n\n"
        f"{budget_lines(results, summaries)}"
    )
    print(report)
    if args.plot:
        plot = args.plot.with_name(f"{args.plot.stem}_{section}{args.plot.suffix}")
        rd_plot(results, first_images, plot)
        report += f"\n![RD plot]({plot.name})\n"
    if args.write:
        write_benchmarks(report, Path(args.write), section)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 0
