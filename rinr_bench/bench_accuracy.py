"""Accuracy parity: does a detector trained on RINR shards match one trained on the original frames?

For each dataset: split by frame index (the first frames train, the last ones validate), then train the same
EdgeDetector (tiny CenterNet) for a fixed number of steps, from the same seeds, on four versions of the training
frames and evaluate every model on the same original validation frames:

  original    the frames as they are, stored losslessly (WebP lossless, checked pixel-exact)
  jpeg-psnr   JPEG at the one quality whose mean object PSNR reaches the first preset's RINR shards' (cheapest such)
  jpeg-bytes  JPEG at the highest quality whose mean bytes per frame stay within the first preset's RINR shards'
              (--no-match-jpeg leaves out both matched JPEG conditions)
  rinr-P      RINR records of each preset P in --presets (default "grid,paper"; the preset's config defaults,
              GridConfig / PaperConfig, unless --fit-steps / --pixels-per-step say otherwise)
  C-qQ        with --classic "jpeg:5,9,15;webp:10,20;avif:10,20": stock codec C at each quality Q (a quality scan)
  V-gG-crfQ   with --video "av1:45,55;av1/1:50": the training frames in order as one AV1 / VP9 stream (PyAV) at
              each CRF Q with a keyframe every G frames (default 32; 1: all-intra), trained on the decoded frames

With several conditions of one codec family (JPEG, WebP, AVIF; RINR per frame; RINR scene mode; a video codec at
one keyframe interval) the report adds the bytes at detector parity: per family, the fewest bytes per frame whose mean
paired difference to `original` is at least -PARITY (--parity, default 0.01 mAP@0.5), and --plot draws mAP@0.5
against bytes per frame, one curve a family.

Seeds are paired: a seed fixes the initial weights, the shard/sample order and the augmentation draws for every
condition. Prints a markdown table (mAP@0.5 and mAP@[.5:.95], mean and sample standard deviation over seeds, and
the paired difference to `original`); --write puts it in docs/BENCHMARKS.md under "Accuracy parity". Shards are
kept under --work, so a re-run with the same settings skips the encoding.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes, make_grid

from lightning_modules.data import JPEGDataModule, RINRDataModule
from lightning_modules.detection_metrics import OPERATING_THRESHOLD, match_detections
from rinr_data import GridConfig, PaperConfig, SceneConfig, __version__
from rinr_data.convert import ConvertConfig, encode_dataset
from rinr_data.core.devices import resolve_device
from rinr_data.core.metrics import RegionDetail
from rinr_data.pipeline.augment import AugmentConfig
from rinr_data.sources import load_sample, open_source

from .benchdoc import replace_section
from .common import ROOT, SHARED_DATA, codec_config, machine, preset_default
from .compare import QualityScan, ShardStats, load_samples, shard_stats, split_source, write_lossless_shards
from .experiment import FrameDetections, RunResult, TrainSettings, detect, frame_detail, train_and_evaluate
from .video import parse_video, write_video_shards

DOC = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## Accuracy parity (issue 6) — `tools/bench_accuracy.py`"
MARK_BEGIN, MARK_END = "<!-- bench_accuracy:begin -->", "<!-- bench_accuracy:end -->"
BASE_CONDITIONS = ("original", "jpeg-psnr", "jpeg-bytes")  # then one "rinr-<preset>" per preset


@dataclass
class Condition:
    """One version of the training frames: its shards, what they hold, and the runs trained on them."""

    name: str
    label: str
    folder: Path
    module: type
    stats: ShardStats
    detail: RegionDetail | None = None
    runs: list[RunResult] = field(default_factory=list)
    family: str | None = None  # the codec family its bytes compete in, where its name does not say


def prepare(data: Path, args: argparse.Namespace, device: torch.device) -> tuple[list[Condition], Path, str]:
    """Split `data`, write the four training shard sets and the lossless validation shards; (conditions, val, note)."""
    source = open_source(data)
    train, val = split_source(source, args.train_frames, args.val_frames)
    work = args.work / data.name
    max_side = args.max_side or None
    rinr_conditions, encode_s = [], {}
    for variant in args.presets:
        t = time.perf_counter()
        codec = variant.codec(args.fit_steps, pixels_per_step=args.pixels_per_step, device=str(device))
        # The codec version is in the folder name: shards of an older codec are never reused as this one's.
        # In scene mode --batch bounds the frames that share a scene, so it changes the records: it names the folder.
        scene_batch = f"-b{args.batch}" if variant.scene_margin is not None else ""
        rinr_dir = work / (
            f"rinr{__version__}-{variant.name.replace('/', '-')}-s{codec.max_steps}"
            f"-p{args.pixels_per_step}-m{args.max_side}-t{len(train.items)}{scene_batch}"
        )
        print(
            f"{data.name}: encoding {len(train.items)} training frames to RINR {variant.name} ({codec.max_steps} "
            f"steps, {args.batch} frames per call, on {device}) ...",
            flush=True,
        )
        encode_dataset(
            train,
            rinr_dir,
            ConvertConfig(
                codec_config=codec,
                max_side=max_side,
                batch=args.batch,
                shard_size=args.shard_size,
                scene="off" if variant.scene_margin is None else "auto",
            ),
            progress=not args.quiet,
        )
        encode_s[variant.name] = time.perf_counter() - t
        rinr_conditions.append(
            Condition(f"rinr-{variant.name}", variant.label(codec), rinr_dir, RINRDataModule, shard_stats(rinr_dir))
        )
    conditions = []
    tag = f"m{args.max_side}-t{len(train.items)}"
    # JPEG matched to the first RINR preset (none without one, or where a stock scan already holds JPEG's curve)
    matched = []
    if rinr_conditions and args.match_jpeg:
        rinr = rinr_conditions[0].stats
        scan = QualityScan(load_samples(train, max_side=max_side))
        by_psnr = scan.at_object_psnr(rinr.object_psnr) or scan(100)
        by_bytes = scan.at_bytes(rinr.bytes_per_frame)
        matched = [("jpeg-psnr", by_psnr.quality), ("jpeg-bytes", by_bytes.quality)]
    for name, quality in matched:
        folder = work / f"jpeg-q{quality}-{tag}"
        encode_dataset(
            train,
            folder,
            ConvertConfig(codec="jpeg", quality=quality, max_side=max_side, shard_size=args.shard_size),
            progress=False,
        )
        conditions.append(Condition(name, f"JPEG q{quality}", folder, JPEGDataModule, shard_stats(folder)))
    for codec, qualities in args.classic:
        for quality in qualities:
            folder = work / f"{codec}-q{quality}-{tag}"
            encode_dataset(
                train,
                folder,
                ConvertConfig(codec=codec, quality=quality, max_side=max_side, shard_size=args.shard_size),
                progress=False,
            )
            label = f"{CLASSIC_NAMES[codec]} q{quality}"
            conditions.append(Condition(f"{codec}-q{quality}", label, folder, JPEGDataModule, shard_stats(folder)))
    for spec in args.video:
        folder = work / f"{spec.name}-{tag}"
        print(f"{data.name}: coding {len(train.items)} training frames as {spec.label} ...", flush=True)
        cost = write_video_shards(train, folder, spec, max_side=max_side, shard_size=args.shard_size)
        stats = replace(shard_stats(folder), codec=spec.codec, bytes_per_frame=cost["bytes_per_frame"])
        label = (
            f"{spec.label}; encode {1000 * cost['encode_s'] / cost['frames']:.0f} ms/frame, decode "
            f"{cost['decode_ms']:.1f} ms/frame in order, {cost['random_access_ms']:.1f} ms for one frame alone"
        )
        conditions.append(Condition(spec.name, label, folder, JPEGDataModule, stats, family=spec.family))
    original = write_lossless_shards(train, work / f"original-{tag}", max_side=max_side, shard_size=args.shard_size)
    conditions.insert(0, Condition("original", "lossless WebP", original, JPEGDataModule, shard_stats(original)))
    conditions += rinr_conditions
    val_dir = write_lossless_shards(
        val, work / f"val-m{args.max_side}-v{len(val.items)}", max_side=max_side, shard_size=args.shard_size
    )
    size = load_sample(val.items[0], max_side=max_side)
    note = (
        f"{data.name} ({source.format}, {len(source.classes)} class(es)): frames 0-{len(train.items) - 1} train, "
        f"{len(source.items) - len(val.items)}-{len(source.items) - 1} validate; {size.width}x{size.height}; "
        + (
            "RINR encode " + ", ".join(f"{p} {s:.0f} s" for p, s in encode_s.items()) + " (0 if resumed)"
            if encode_s
            else "no RINR preset"
        )
    )
    return conditions, val_dir, note


def mean_sd(values: list[float]) -> str:
    """`mean ± sample sd` (sd omitted for one value)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(dataset: str, conditions: list[Condition]) -> list[str]:
    """Markdown rows of one dataset."""
    base = next(c for c in conditions if c.name == "original")
    rows = []
    for c in conditions:
        m50 = [r.map_50 for r in c.runs]
        m = [r.map for r in c.runs]
        diff = [r.map_50 - b.map_50 for r, b in zip(c.runs, base.runs)]
        psnr = "lossless" if c.name == "original" else f"{c.stats.object_psnr:.2f} / {c.stats.background_psnr:.2f}"
        detail = "—"
        if c.detail is not None:
            ratio = f"{c.detail.ratio:.1f}x" if math.isfinite(c.detail.ratio) else "—"
            detail = f"{c.detail.background:.3f} / {c.detail.objects:.3f} ({ratio})"
        errors = " / ".join(
            f"{statistics.fmean(getattr(r, k) for r in c.runs):.2f}" for k in ("precision", "recall", "fp_per_image")
        )
        rows.append(
            f"| {dataset} | {c.name} | {c.label} | {c.stats.bytes_per_frame:,.0f} | {psnr} | {detail} | "
            f"{mean_sd(m50)} | "
            f"{mean_sd(m)} | {'—' if c is base else mean_sd(diff)} | "
            f"{', '.join(f'{v:.3f}' for v in m50)} | {errors} | "
            f"{statistics.fmean(r.train_s for r in c.runs):.0f} |"
        )
    return rows


CLASSIC_NAMES = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}


def family(condition: Condition) -> str | None:
    """The codec family a condition's bytes compete in (None for the originals)."""
    if condition.name == "original":
        return None
    if condition.family is not None:
        return condition.family
    if condition.name.startswith("rinr-"):
        return "RINR scene mode" if "+scene" in condition.name else "RINR per frame"
    return CLASSIC_NAMES[condition.name.split("-")[0]]


@dataclass(frozen=True)
class Parity:
    """A family's cheapest condition at detector parity, or (condition None) its best attempt."""

    family: str
    condition: Condition | None
    best: Condition  # the condition closest to parity (the parity one when reached)
    tested: int


def paired_gap(condition: Condition, base: Condition) -> float:
    """Mean over seeds of the paired mAP@0.5 difference to `base`."""
    return statistics.fmean(r.map_50 - b.map_50 for r, b in zip(condition.runs, base.runs))


def parity(conditions: list[Condition], tolerance: float) -> list[Parity]:
    """Per codec family, the fewest bytes per frame whose mean paired difference to `original` is >= -tolerance."""
    base = next(c for c in conditions if c.name == "original")
    out = []
    for name in dict.fromkeys(f for f in map(family, conditions) if f is not None):
        members = sorted((c for c in conditions if family(c) == name), key=lambda c: c.stats.bytes_per_frame)
        reached = [c for c in members if paired_gap(c, base) >= -tolerance]
        best = reached[0] if reached else max(members, key=lambda c: paired_gap(c, base))
        out.append(Parity(name, reached[0] if reached else None, best, len(members)))
    return out


def parity_rows(dataset: str, conditions: list[Condition], tolerance: float) -> list[str]:
    """Markdown rows of the bytes-at-parity table of one dataset."""
    base = next(c for c in conditions if c.name == "original")
    rows = []
    for p in parity(conditions, tolerance):
        c = p.best
        gap = paired_gap(c, base)
        where = f"{c.stats.bytes_per_frame:,.0f}" if p.condition is not None else "not reached"
        rows.append(
            f"| {dataset} | {p.family} | {where} | {c.name} ({c.label}) | {gap:+.3f} | "
            f"{statistics.fmean(r.map for r in c.runs):.3f} | {statistics.fmean(r.fp_per_image for r in c.runs):.2f} "
            f"| {p.tested} |"
        )
    return rows


def parity_plot(results: dict[str, list[Condition]], tolerance: float, path: Path) -> None:
    """mAP@0.5 (mean over seeds) against bytes per frame, one curve a codec family, the originals' band dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (dataset, conditions) in zip(axes[0], results.items()):
        base = next(c for c in conditions if c.name == "original")
        level = statistics.fmean(r.map_50 for r in base.runs)
        ax.axhspan(level - tolerance, level + tolerance, color="0.9")
        ax.axhline(
            level, color="0.5", linestyle="--", label=f"original (lossless, {base.stats.bytes_per_frame:,.0f} B)"
        )
        for name in dict.fromkeys(f for f in map(family, conditions) if f is not None):
            members = sorted((c for c in conditions if family(c) == name), key=lambda c: c.stats.bytes_per_frame)
            ax.plot(
                [c.stats.bytes_per_frame for c in members],
                [statistics.fmean(r.map_50 for r in c.runs) for c in members],
                marker="o",
                label=name,
            )
        ax.set_xscale("log")
        ax.set_xlabel("bytes per frame")
        ax.set_ylabel("mAP@0.5 (mean over seeds)")
        ax.set_title(dataset)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def error_figure(
    frames: dict[str, list[FrameDetections]], path: Path, count: int = 6, threshold: float = OPERATING_THRESHOLD
) -> None:
    """PNG grid: `count` evaluation frames (rows) x conditions (columns, in table order), 2x upscaled; true boxes
    green, detections at or above `threshold` that hit one blue, false positives red."""
    names = list(frames)
    total = len(frames[names[0]])
    picks = [round(i * (total - 1) / max(1, count - 1)) for i in range(min(count, total))]
    tiles = []
    for i in picks:
        for name in names:
            f = frames[name][i]
            keep = f.detections["scores"] >= threshold
            boxes, scores, labels = (f.detections[k][keep] for k in ("boxes", "scores", "labels"))
            hit = match_detections(boxes, scores, labels, f.boxes, f.labels)
            image = (f.image.clamp(0, 1) * 255).round().to(torch.uint8)
            image = torch.nn.functional.interpolate(image[None].float(), scale_factor=2, mode="nearest")[0]
            image = draw_bounding_boxes(image.to(torch.uint8), f.boxes * 2, colors="lime", width=1)
            if len(boxes):
                image = draw_bounding_boxes(
                    image, boxes * 2, colors=["blue" if h else "red" for h in hit.tolist()], width=2
                )
            tiles.append(image)
    grid = make_grid(tiles, nrow=len(names), padding=4, pad_value=255)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)


def write_section(text: str, path: Path, section: str | None = None) -> None:
    """Put `text` between this tool's markers (of `section`, if named) under the Accuracy parity heading; other
    sections stay as they are."""
    begin, end = (
        (MARK_BEGIN, MARK_END)
        if section is None
        else (f"<!-- bench_accuracy:{section}:begin -->", f"<!-- bench_accuracy:{section}:end -->")
    )
    replace_section(path, begin, end, text, HEADING if section is None else f"### Accuracy parity: {section}")


@dataclass(frozen=True)
class RinrVariant:
    """One RINR condition: a preset and what the command line changed of it."""

    preset: str
    steps: int | None = None
    psnr: tuple[float, float] | None = None
    box_levels: int | None = None
    scene_margin: float | None = None  # scene mode with this SceneConfig.psnr_margin; None: per-frame records
    scene_cut: float | None = None  # SceneConfig.cut_psnr (scene mode only)
    box_margin: int | None = None  # GridShape.box_margin (pixels)
    cold: bool = False  # every frame fitted from scratch (GridConfig.warm_frames = 0), not from a warm start
    frame_synthesis: str | None = None  # SceneConfig.frame_synthesis (scene mode only; None: its default)
    seed: int | None = None  # the fit's seed (None: the preset's): a second encoding of one setting

    @property
    def name(self) -> str:
        """The spec without its step count (steps are in the label): `grid`, `grid@30/30+box0+scene8`."""
        return (
            self.preset
            + (f"@{self.psnr[0]:g}/{self.psnr[1]:g}" if self.psnr else "")
            + (f"+box{self.box_levels}" if self.box_levels is not None else "")
            + (f"+pad{self.box_margin}" if self.box_margin is not None else "")
            + (f"+scene{self.scene_margin:g}" if self.scene_margin is not None else "")
            + (f"+cut{self.scene_cut:g}" if self.scene_cut is not None else "")
            + (f"+{self.frame_synthesis}" if self.frame_synthesis is not None else "")
            + ("+cold" if self.cold else "")
            + (f"+seed{self.seed}" if self.seed is not None else "")
        )

    def codec(self, fit_steps: int | None = None, **fields: Any) -> GridConfig | PaperConfig:
        """The preset's config for this variant (its steps, else `fit_steps`, else the preset's) with those of `fields`
        the preset has set."""
        if self.psnr:
            fields.update(object_psnr=self.psnr[0], background_psnr=self.psnr[1])
        if self.scene_margin is not None:
            synthesis = {} if self.frame_synthesis is None else {"frame_synthesis": self.frame_synthesis}
            fields.update(scene=SceneConfig(psnr_margin=self.scene_margin, cut_psnr=self.scene_cut, **synthesis))
        if self.cold:
            fields.update(warm_frames=0)
        if self.seed is not None:
            fields.update(seed=self.seed)
        codec = codec_config(self.preset, max_steps=self.steps or fit_steps, **fields)
        grid = {k: v for k, v in (("box_levels", self.box_levels), ("box_margin", self.box_margin)) if v is not None}
        return codec.with_grid(**grid) if grid else codec

    def label(self, codec: GridConfig | PaperConfig) -> str:
        """Table label: preset, steps, and what differs from the preset's defaults."""
        # A per-frame grid preset starts its frames from the dataset's warm start (rinr-encode's default), which
        # scene mode does not use: its frames fit `warm_steps`, only the warm-start sample fits `max_steps`.
        warm = getattr(codec, "warm_frames", 0) if self.scene_margin is None else 0
        steps = (
            f"warm start, {codec.warm_steps} steps a frame ({codec.max_steps} for its {warm}-frame sample)"
            if warm
            else f"{codec.max_steps} steps"
        )
        return (
            f"RINR {self.preset}, {steps}"
            + (f", targets {self.psnr[0]:g}/{self.psnr[1]:g} dB" if self.psnr else "")
            + (f", {self.box_levels} box-only levels" if self.box_levels is not None else "")
            + (f", box levels {self.box_margin} px around the boxes" if self.box_margin is not None else "")
            + (
                f", scene mode (scene {self.scene_margin:g} dB above the background)"
                if self.scene_margin is not None
                else ""
            )
            + (f", new scene below {self.scene_cut:g} dB" if self.scene_cut is not None else "")
            + (f", frames {self.frame_synthesis} the scene's synthesis" if self.frame_synthesis is not None else "")
            + (", every frame fitted from scratch" if self.cold else "")
            + (f", fitting seed {self.seed}" if self.seed is not None else "")
        )


PRESET_GRAMMAR = (
    "PRESET[:STEPS][@OBJECT_DB/BACKGROUND_DB][+boxN][+padPX][+scene[MARGIN_DB]][+cutDB][+reuse|+tune][+cold][+seedN]"
)


def parse_preset(text: str) -> RinrVariant:
    """`PRESET_GRAMMAR` -> RinrVariant (ValueError naming the spec if malformed)."""
    spec = text.strip()
    try:
        rest, *modifiers = spec.split("+")
        head, _, targets = rest.partition("@")
        name, _, steps = head.partition(":")
        psnr = None
        if targets:
            obj, _, bg = targets.partition("/")
            psnr = (float(obj), float(bg))
        box = pad = margin = cut = synthesis = None
        cold = False
        seed = None
        for m in modifiers:
            if m == "cold":
                cold = True
            elif m in ("reuse", "tune"):
                if synthesis is not None:
                    raise ValueError("+reuse and +tune exclude each other")
                synthesis = m
            elif m.startswith("box"):
                box = int(m[3:])
            elif m.startswith("pad"):
                pad = int(m[3:])
            elif m.startswith("scene"):
                margin = float(m[5:]) if m[5:] else SceneConfig.psnr_margin
            elif m.startswith("cut"):
                cut = float(m[3:])
            elif m.startswith("seed"):
                seed = int(m[4:])
            else:
                raise ValueError(f"unknown modifier +{m}")
        variant = RinrVariant(
            name, int(steps) if steps else None, psnr, box, margin, cut, pad, cold, synthesis, seed=seed
        )
    except ValueError as exc:
        raise ValueError(f"bad --presets entry {spec!r} (want {PRESET_GRAMMAR}): {exc}") from None
    if (box is not None or pad is not None or margin is not None or cold) and variant.preset != "grid":
        raise ValueError(f"bad --presets entry {spec!r}: +boxN, +padPX, +scene and +cold apply to the grid preset only")
    if (cut is not None or synthesis is not None) and margin is None:
        raise ValueError(f"bad --presets entry {spec!r}: +cutDB, +reuse and +tune need +scene")
    return variant


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        help="COCO / VOC / YOLO folder; repeat for several (default: ../shared/data/vtest-long)",
    )
    p.add_argument("--train-frames", type=int, help="the first N frames train (default: all before validation)")
    p.add_argument("--val-frames", type=int, help="the last N frames validate (default: a quarter)")
    p.add_argument("--max-side", type=int, default=0, help="downscale frames to this longer side (0: keep)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated paired seeds (default: %(default)s)")
    p.add_argument("--steps", type=int, default=1000, help="detector steps per run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="detector batch (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="detector AdamW peak learning rate (default: %(default)s)")
    p.add_argument("--no-augment", action="store_true", help="train without flip/scale/colour augmentation")
    p.add_argument(
        "--blur",
        type=float,
        default=0.0,
        help="probability of a Gaussian blur of each training frame (sigma 0.3-1.5 px; default 0)",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="probability of Gaussian noise (sigma 0.02) on each training frame (default 0)",
    )
    p.add_argument(
        "--box-blur",
        type=float,
        default=0.0,
        help="probability of a Gaussian blur of the pixels inside the boxes only (sigma 0.5-2 px; default 0)",
    )
    p.add_argument(
        "--background-sharpen",
        type=float,
        default=0.0,
        help="probability of sharpening the pixels outside the boxes (factor 2-4; default 0)",
    )
    p.add_argument(
        "--presets",
        default="grid,paper",
        help=f"RINR presets, one condition each, as {PRESET_GRAMMAR} to set that preset's fitting "
        "steps, PSNR targets and (grid) box-only levels, their margin in pixels around the boxes "
        "or scene mode (scene backgrounds MARGIN_DB above the background target, shared by the "
        "frames of each --batch; +cutDB: a frame the scene reproduces below DB starts a new one, "
        "default the background target; +reuse / +tune: scene frames keep or fine-tune the scene's synthesis, "
        "default: reuse unless a frame then misses a target; +cold: every frame fitted from scratch, "
        "without the dataset's warm start; +seedN: fit with seed N, a second encoding of one setting to see how "
        "much the records themselves move the detector); JPEG is matched to the first; '' for none, to scan "
        "--classic codecs only (default: %(default)s)",
    )
    p.add_argument(
        "--classic",
        default="",
        help='stock codecs at several qualities, one condition each: "jpeg:5,9,15;webp:10,20;avif:10,20" '
        "(a quality scan for the bytes-at-parity table)",
    )
    p.add_argument(
        "--video",
        default="",
        help='the training frames as one video stream per CRF, one condition each: "av1:45,55;av1/1:50;vp9:45" '
        "(CODEC[/GOP]:CRF,...; GOP: frames per keyframe, default 32, 1 for all-intra; needs PyAV)",
    )
    p.add_argument(
        "--parity",
        type=float,
        default=0.01,
        help="detector parity: a mean paired mAP@0.5 difference to the originals of at least -PARITY "
        "(default: %(default)s)",
    )
    p.add_argument("--plot", type=Path, default=None, help="PNG of mAP@0.5 against bytes per frame per codec family")
    p.add_argument(
        "--no-match-jpeg",
        dest="match_jpeg",
        action="store_false",
        help="leave out jpeg-psnr and jpeg-bytes (JPEG matched to the first preset), e.g. beside a --classic scan "
        "run before with the same seeds",
    )
    p.add_argument("--fit-steps", type=int, default=None, help="RINR fitting step budget (default: each preset's)")
    p.add_argument(
        "--pixels-per-step",
        type=int,
        default=preset_default("paper", "pixels_per_step"),
        help="paper preset: RINR pixels per fitting step (default: %(default)s)",
    )
    p.add_argument("--batch", type=int, default=16, help="frames per RINR fitting call (default: %(default)s)")
    p.add_argument("--shard-size", type=int, default=50, help="samples per shard (default: %(default)s)")
    p.add_argument("--num-workers", type=int, default=0, help="loader worker processes (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto: fitting, decode and training")
    p.add_argument("--work", type=Path, default=ROOT / "out" / "bench-accuracy", help="shard folder (kept)")
    p.add_argument("--write", action="store_true", help=f"put the table in {DOC.relative_to(ROOT)}")
    p.add_argument("--section", default=None, help="with --write: a named section of its own, beside the main one")
    p.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="PNG of the first seed's models on evaluation frames (columns: conditions in table order; "
        f"green: true boxes, blue: hits, red: false positives at score {OPERATING_THRESHOLD:g})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    args.data = args.data or [SHARED_DATA / "vtest-long"]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.presets = [parse_preset(p) for p in args.presets.split(",") if p.strip()]
    args.classic = parse_classic(args.classic)
    try:
        args.video = parse_video(args.video)
    except ValueError as exc:
        p.error(str(exc))
    if not args.presets and not args.classic and not args.video:
        p.error("nothing to compare with the originals: give --presets, --classic, --video or several")
    return args


def parse_classic(text: str) -> list[tuple[str, list[int]]]:
    """`"jpeg:5,9;webp:20"` -> [("jpeg", [5, 9]), ("webp", [20])] (ValueError naming the entry if malformed)."""
    out = []
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        codec, _, qualities = entry.partition(":")
        try:
            values = [int(q) for q in qualities.split(",") if q.strip()]
        except ValueError:
            values = []
        if codec not in CLASSIC_NAMES or not values or not all(1 <= q <= 100 for q in values):
            raise ValueError(
                f"bad --classic entry {entry!r}: want CODEC:Q[,Q...] with CODEC one of {', '.join(CLASSIC_NAMES)} "
                "and qualities 1-100"
            )
        out.append((codec, sorted(set(values))))
    return out


def detector_settings(
    steps: int, batch_size: int, lr: float, augment: bool | AugmentConfig, **options: Any
) -> TrainSettings:
    """The benchmark's detector training: `steps` x `batch_size` frames at peak `lr`, a tenth of the steps (at most
    100) of warmup; `options` are further TrainSettings fields."""
    return TrainSettings(
        steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(100, steps // 10), augment=augment, **options
    )


def augmentation(args: argparse.Namespace) -> bool | AugmentConfig:
    """The training augmentation the flags ask for: False, the defaults (True), or the defaults plus blur/noise."""
    extra = {
        "blur": args.blur,
        "noise": args.noise,
        "box_blur": args.box_blur,
        "background_sharpen": args.background_sharpen,
    }
    if args.no_augment:
        if any(extra.values()):
            raise SystemExit(
                "--blur/--noise/--box-blur/--background-sharpen add to the default augmentation; drop --no-augment"
            )
        return False
    return AugmentConfig(**extra) if any(extra.values()) else True


def describe(augment: bool | AugmentConfig) -> str:
    """'on', 'off', or 'on, blur p / noise p' for the report."""
    if not isinstance(augment, AugmentConfig):
        return "on" if augment else "off"
    parts = []
    if augment.blur:
        parts.append(f"blur (p {augment.blur:g})")
    if augment.noise:
        parts.append(f"noise (p {augment.noise:g}, sigma {augment.noise_sigma:g})")
    if augment.box_blur:
        parts.append(
            f"blur inside the boxes (p {augment.box_blur:g}, sigma {augment.box_blur_sigma[0]:g}-"
            f"{augment.box_blur_sigma[1]:g})"
        )
    if augment.background_sharpen:
        lo, hi = augment.background_sharpen_factor
        parts.append(f"sharpening outside the boxes (p {augment.background_sharpen:g}, factor {lo:g}-{hi:g})")
    return "on, plus " + " and ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Prepare shards, train every condition and seed, print (and optionally record) the table."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    settings = detector_settings(
        args.steps,
        args.batch_size,
        args.lr,
        augmentation(args),
        num_workers=args.num_workers,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        progress=not args.quiet,
    )
    start = time.perf_counter()
    rows, notes, parity_table = [], [], []
    results: dict[str, list[Condition]] = {}
    for data in args.data:
        conditions, val_dir, note = prepare(data, args, device)
        figure: dict[str, list[FrameDetections]] = {}
        notes.append(note)
        for c in conditions:
            c.detail = frame_detail(c.module, c.folder, settings)
        for seed in args.seeds:
            for c in conditions:
                run = train_and_evaluate(c.module, c.folder, val_dir, settings, seed)
                if args.figure and seed == args.seeds[0]:
                    figure[c.name] = detect(run.model, val_dir, settings)
                run.model = None  # only the figure needs it
                c.runs.append(run)
                print(
                    f"{data.name} seed {seed} {c.name:<10}: mAP@0.5 {run.map_50:.3f}, mAP {run.map:.3f}, "
                    f"precision {run.precision:.2f}, recall {run.recall:.2f}, FP/frame {run.fp_per_image:.2f} "
                    f"({run.train_s:.0f} s)",
                    flush=True,
                )
        rows += table(data.name, conditions)
        results[data.name] = conditions
        if any(sum(family(c) == f for c in conditions) > 1 for f in set(map(family, conditions)) if f is not None):
            parity_table += parity_rows(data.name, conditions, args.parity)
        if figure:
            path = args.figure if len(args.data) == 1 else args.figure.with_stem(f"{args.figure.stem}-{data.name}")
            error_figure(figure, path)
            print(f"figure: {path}")
    header = (
        "| data | condition | training frames | bytes/frame | object / background PSNR dB | "
        "detail outside / inside boxes (inside ÷ outside) | mAP@0.5 | mAP@[.5:.95] | "
        "Δ mAP@0.5 vs original (paired) | "
        f"mAP@0.5 per seed | precision / recall / FP per frame at score {OPERATING_THRESHOLD:g} | "
        "train s/run |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    text = (
        f"Measured by `tools/bench_accuracy.py {' '.join(argv if argv is not None else sys.argv[1:])}` on "
        f"{machine(device)}, {time.strftime('%Y-%m-%d')}; {time.perf_counter() - start:.0f} s in all.\n\n"
        + "".join(f"- {n}\n" for n in notes)
        + f"- detector: tiny CenterNet from scratch, {settings.steps} steps x {settings.batch_size} frames, "
        f"lr {settings.lr:g}, warmup {settings.warmup_steps}, "
        f"augmentation {describe(settings.augment)}; "
        f"seeds {', '.join(map(str, args.seeds))} (paired); every model evaluated on the original validation "
        f"frames (lossless WebP)\n"
        + (
            f"- RINR: presets {', '.join(v.name for v in args.presets)}, fitting steps and PSNR targets as "
            f"labelled (else the preset's); paper preset {args.pixels_per_step} pixels per step\n"
            if args.presets
            else "- RINR: none (stock codecs only)\n"
        )
        + "- detail: mean absolute Laplacian of the training frames as decoded ([0, 1] pixels), outside and "
        "inside the boxes and their ratio (`rinr_data.core.metrics.region_detail`)\n"
        "- mAP: mean ± sample standard deviation over the seeds; precision, recall and false positives per "
        f"frame at score {OPERATING_THRESHOLD:g} (IoU 0.5): means over the seeds\n\n" + header + "\n" + "\n".join(rows)
    )
    if parity_table:
        text += (
            f"\n\nBytes at detector parity (mean paired Δ mAP@0.5 >= -{args.parity:g} against the originals): per "
            "codec family the fewest bytes per frame that reach it, else the family's closest condition:\n\n"
            "| data | codec family | bytes/frame at parity | condition | Δ mAP@0.5 (paired mean) | mAP@[.5:.95] | "
            "false alarms per frame | conditions tested |\n|---|---|---|---|---|---|---|---|\n"
            + "\n".join(parity_table)
        )
    if args.plot:
        parity_plot(results, args.parity, args.plot)
        print(f"plot: {args.plot}")
    print("\n" + text)
    if args.write:
        write_section(text, DOC, args.section)
        print(f"\nwritten to {DOC}")
    return 0
