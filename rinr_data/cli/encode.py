"""rinr-encode SRC OUT: convert a COCO / YOLO / VOC / CSV / image-folder dataset into WebDataset shards."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .. import codecs
from ..codecs import PRESETS, SceneConfig
from ..codecs.grid.config import SCENE_DEFAULTS
from ..codecs.grid.fit import COMPILE_MODES, PRECISIONS
from ..convert import (
    CODECS,
    ON_ERROR,
    SCENE_MODES,
    ConvertConfig,
    Estimate,
    encode_dataset,
    estimate,
    init_distributed,
    sample_indices,
)
from ..core.devices import rank_and_world
from ..errors import FormatError, ResumeError
from ..sources import FORMATS, SampleError, Source, SourceError, open_source, parse_size


def build_parser() -> argparse.ArgumentParser:
    """The rinr-encode argument parser."""
    p = argparse.ArgumentParser(
        prog="rinr-encode",
        description="Convert a detection dataset into WebDataset shards of residual-INR records (or classic "
        "JPEG/WebP/AVIF images). Re-running with the same arguments resumes after the last "
        "complete shard. Under torchrun, ranks share the shards.",
    )
    p.add_argument("src", type=Path, help="dataset folder, COCO .json, DeepForest .csv or YOLO data.yaml")
    p.add_argument("out", type=Path, help="output folder for shards and manifest.json")
    g = p.add_argument_group("input")
    g.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="dataset format (default: detect)")
    g.add_argument(
        "--classes",
        help="class names, comma-separated or a file with one per line; fixes the label "
        "order and makes any other class an error (default: from the dataset)",
    )
    g.add_argument("--size", type=parse_size, metavar="WxH", help="resize every image to WxH (boxes scaled alike)")
    g.add_argument("--max-side", type=int, metavar="N", help="downscale images whose longer side exceeds N")
    g.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="threads for image loading and classic codecs (default: %(default)s)",
    )
    g.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="stop",
        help="stop at the first bad sample, or skip it and count it (default: %(default)s)",
    )
    c = p.add_argument_group("codec")
    c.add_argument("--codec", choices=CODECS, default="rinr", help="image member codec (default: %(default)s)")
    c.add_argument("--quality", type=int, help="classic codec quality (default: jpeg/webp 90, avif 80)")
    c.add_argument("--preset", choices=PRESETS, help=f"INR codec (default: {codecs.DEFAULT})")

    def per_preset(name: str) -> str:
        return ", ".join(f"{p} {_default(p, name)}" for p in PRESETS)

    def per_mode(name: str) -> str:
        return f"{per_preset(name)}; with --scene auto {SCENE_DEFAULTS[name]:g}"

    c.add_argument("--object-psnr", type=float, help=f"object PSNR target in dB (default: {per_mode('object_psnr')})")
    c.add_argument(
        "--background-psnr", type=float, help=f"background PSNR target in dB (default: {per_mode('background_psnr')})"
    )
    c.add_argument("--max-steps", type=int, help=f"fitting step budget (default: {per_mode('max_steps')})")
    c.add_argument(
        "--pixels-per-step",
        type=int,
        help=f"paper preset: pixels sampled per INR and fitting step, speed vs. quality "
        f"(default: {_default('paper', 'pixels_per_step')})",
    )
    c.add_argument(
        "--box-levels",
        type=int,
        help=f"grid preset: at most N finest latent levels coded only where they touch a box, so the "
        f"background comes from 1/2^N resolution; frames whose background that cannot reproduce "
        f"get fewer (default: {_default('grid', 'grid').box_levels}; 0 keeps a "
        f"full-resolution background, which detectors trained on the frames want: "
        f"docs/BENCHMARKS.md, Accuracy parity)",
    )
    c.add_argument(
        "--box-margin",
        type=int,
        metavar="PX",
        help=f"grid preset: box-only levels also hold latents this many pixels around every box, so "
        f"they reach what a box clips and the codec leaves no seam at its edge (0-255; default: "
        f"{_default('grid', 'grid').box_margin}; with --scene auto {SCENE_DEFAULTS['box_margin']})",
    )
    c.add_argument(
        "--warm-frames",
        type=int,
        metavar="N",
        help=f"grid preset: fit N frames spread over the dataset first (--max-steps, one shared synthesis) and "
        f"start every frame's fit from what they learned, so it needs only --warm-steps steps; 0 fits every "
        f"frame from scratch for --max-steps (default: {_default('grid', 'warm_frames')})",
    )
    c.add_argument(
        "--warm-steps",
        type=int,
        metavar="N",
        help="grid preset: fitting steps of a frame that starts warm; one still below a PSNR target after them gets "
        f"up to a third more (default: {_default('grid', 'warm_steps')})",
    )
    c.add_argument("--seed", type=int, help=f"fitting seed (default: {_default(codecs.DEFAULT, 'seed')})")
    c.add_argument(
        "--scene",
        choices=SCENE_MODES,
        default="off",
        help="'auto': scene mode (grid preset, static cameras): the frames of each --batch share scene "
        "background records, stored in their shard; frames in camera order; each --batch (default: the whole "
        "shard; frames are fitted 16 at a time, so memory does not grow with it) shares its scenes; "
        "the quality defaults change to scene mode's (see the options above) (default: %(default)s)",
    )
    c.add_argument(
        "--scene-cut",
        type=float,
        metavar="DB",
        help="with --scene auto: a frame its scene reproduces below DB dB outside its boxes starts a new "
        f"scene (default: {SCENE_DEFAULTS['cut_psnr']:g}; a cut scores ~10-18 dB, passers-by and noise "
        "leave more)",
    )
    c.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    c.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        help="grid preset: run the fitting step under torch.compile; 'auto' compiles frames of 256x256 pixels or "
        "more (1.2-1.45x per step on a CPU; the first run on a machine spends minutes compiling, later runs seconds) "
        "(default: auto)",
    )
    c.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="grid preset: the fitting step's render in float32 or bfloat16 (float32 sums; the loss and the stored "
        "values stay float32); 'auto' takes bfloat16 on a CPU with native support (AVX512-BF16 or AMX: 1.25x "
        "faster a frame, bytes within 0.6%% and PSNRs within 0.11 dB of float32's), else float32 (default: auto)",
    )
    c.add_argument(
        "--batch",
        type=int,
        help="frames fitted together per call: 4 suits a CPU, a GPU wants 16 or more (default: 4); with --scene "
        "auto, the frames that may share scene records (default: --shard-size)",
    )
    c.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="fitting calls run at once, each on its share of the torch threads; 0: on a CPU one per thread "
        "(up to 4), on a GPU 1 (default: %(default)s)",
    )
    s = p.add_argument_group("shards")
    s.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default: %(default)s)")
    s.add_argument("--prefix", default="shard", help="shard names: PREFIX-000000.tar (default: %(default)s)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = p.add_argument_group("cost")
    e.add_argument(
        "--estimate",
        type=int,
        nargs="?",
        const=16,
        metavar="N",
        help="encode a sample of N frames (default 16; whole batches, spread over the dataset) with these "
        "settings into a temporary folder, print the projected hours and bytes of the whole run, and exit; "
        "OUT is not written",
    )
    e.add_argument("--json", action="store_true", help="with --estimate: print the estimate as JSON")
    return p


def _default(preset: str, name: str) -> object:
    return codecs.get(preset).config_class.__dataclass_fields__[name].default


def _classes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    return [v.strip() for v in value.split(",")]


def _device(requested: str) -> str:
    """Under torchrun each rank takes its own GPU (LOCAL_RANK) when CUDA is asked for or auto-selected."""
    import torch

    local = os.environ.get("LOCAL_RANK")
    if local is not None and rank_and_world()[1] > 1 and requested in ("cuda", "auto"):
        if torch.cuda.is_available():
            return f"cuda:{int(local) % torch.cuda.device_count()}"
    return requested


def build_config(args: argparse.Namespace) -> ConvertConfig:
    """ConvertConfig from parsed arguments (raises ValueError for invalid combinations)."""
    overrides = {
        name: getattr(args, name)
        for name in (
            "preset",
            "object_psnr",
            "background_psnr",
            "max_steps",
            "pixels_per_step",
            "warm_frames",
            "warm_steps",
            "seed",
        )
        if getattr(args, name) is not None
    }
    preset = overrides.get("preset", codecs.DEFAULT)
    config_class = codecs.get(preset).config_class
    # A flag of the other INR codec is ignored (its help says which codec reads it), so one set of flags serves both.
    known = {f.name for f in dataclasses.fields(config_class)}
    fields = {k: v for k, v in overrides.items() if k in known}
    # Scene mode has defaults of its own (the setting measured closest to detector parity on a static camera).
    scene_defaults = args.scene == "auto" and hasattr(config_class, "for_scenes")
    make = config_class.for_scenes if scene_defaults else config_class
    codec_config = make(device=_device(args.device), **fields)
    # How the grid fit runs: refused for another preset rather than ignored, as a user asking for it expects it to act.
    for name in ("compile", "precision"):
        if getattr(args, name) is not None:
            if name not in known:
                raise ValueError(f"--{name} applies to the grid preset only, not {preset!r}")
            codec_config = codec_config.replace(**{name: getattr(args, name)})
    for name in ("box_levels", "box_margin"):
        if getattr(args, name) is not None:
            if not hasattr(codec_config, "with_grid"):
                raise ValueError(f"--{name.replace('_', '-')} applies to the grid preset only, not {preset!r}")
            codec_config = codec_config.with_grid(**{name: getattr(args, name)})
            overrides[name] = getattr(args, name)
    if args.scene_cut is not None:
        if args.scene != "auto":
            raise ValueError("--scene-cut applies to --scene auto only")
        scene = dataclasses.replace(codec_config.scene or SceneConfig(), cut_psnr=args.scene_cut)
        codec_config = codec_config.replace(scene=scene)
    if args.codec != codecs.RECORD_MEMBER and overrides:
        raise ValueError(f"--{'/--'.join(k.replace('_', '-') for k in overrides)} apply to --codec rinr only")
    if args.size is not None and args.max_side is not None:
        raise ValueError("give --size or --max-side, not both")
    return ConvertConfig(
        codec=args.codec,
        codec_config=codec_config,
        quality=args.quality,
        size=args.size,
        max_side=args.max_side,
        shard_size=args.shard_size,
        # A scene's bytes are shared by the frames of one batch: scene mode wants the longest batch a shard holds.
        batch=args.batch
        if args.batch is not None
        else (args.shard_size if args.scene == "auto" else ConvertConfig.batch),
        prefix=args.prefix,
        scene=args.scene,
        workers=args.workers,
        jobs=args.jobs,
        on_error=args.on_error,
    )


def main(argv: Sequence[str] | None = None, *, on_sample: Callable[[int, str], None] | None = None) -> int:
    """Run rinr-encode; returns the exit code (0 ok, 1 a sample failed under --on-error stop, 2 bad usage/input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = build_config(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.json and args.estimate is None:
        parser.error("--json applies to --estimate only")
    if args.estimate is not None:
        if args.estimate < 1:
            parser.error(f"--estimate needs N >= 1 frames, got {args.estimate}")
        if rank_and_world()[1] > 1:
            parser.error("--estimate runs in one process: run it without torchrun")
        return _estimate(args, config)
    rank, world = init_distributed()
    say = (lambda msg: print(msg, file=sys.stderr)) if rank == 0 else (lambda msg: None)
    try:
        source = _open_source(args, say)
        if source is None:
            return 2
        n_shards = -(-len(source.items) // config.shard_size)
        say(
            f"{args.src}: {source.format}, {len(source.items)} samples, {len(source.classes)} class(es) -> "
            f"{args.out}: {n_shards} shard(s) of up to {config.shard_size}, codec {config.codec}"
            + (f" on {world} ranks" if world > 1 else "")
        )
        start = time.perf_counter()
        try:
            result = encode_dataset(
                source, args.out, config, rank=rank, world=world, progress=not args.no_progress, on_sample=on_sample
            )
        except (ResumeError, FormatError) as exc:  # FormatError: a shard of the output changed under the run
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except SampleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            print(
                "stopped (--on-error stop): complete shards are kept; fix the input or pass --on-error skip, "
                "then re-run with the same arguments to resume",
                file=sys.stderr,
            )
            return 1
        elapsed = time.perf_counter() - start
        if rank == 0:
            encoded = sum(1 for _ in result.written)
            say(
                f"done in {elapsed:.1f} s: {result.samples} samples in {n_shards} shard(s) "
                f"({encoded} written by this run{' on rank 0' if world > 1 else ''}, "
                f"{len(result.already_complete)} already complete); manifest {result.manifest}"
            )
            say(
                f"skipped: {len(result.skipped)} sample(s)"
                + "".join(f"\n  {s['key']}: {s['error']}" for s in result.skipped[:20])
                + ("\n  ..." if len(result.skipped) > 20 else "")
            )
        return 0
    finally:
        import torch.distributed as dist

        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _open_source(args: argparse.Namespace, say: Callable[[str], None]) -> Source | None:
    """The dataset named on the command line with its warnings said, or None after printing why it cannot be read."""
    try:
        source = open_source(args.src, args.format, _classes(args.classes))
    except (SourceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    for note in source.warnings:
        say(f"warning: {note}")
    return source


def _estimate(args: argparse.Namespace, config: ConvertConfig) -> int:
    source = _open_source(args, lambda msg: print(msg, file=sys.stderr))
    if source is None:
        return 2
    if source.items:
        picked = len(sample_indices(len(source.items), args.estimate, config.batch))
        print(
            f"{args.src}: {source.format}, {len(source.items)} samples; estimating from {picked} of them "
            f"(whole batches of {config.batch}, spread over the dataset); {args.out} is not written",
            file=sys.stderr,
        )
    try:
        est = estimate(source, config, args.estimate, progress=not args.no_progress)
    except SampleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(est.as_dict(), indent=1) if args.json else format_estimate(est, args.src))
    return 0


def format_estimate(est: Estimate, src: str | Path) -> str:
    """The estimate as a short two-column table."""
    codec = est.settings["codec_config"]
    named = {
        "preset": "preset {}",
        "quality": "quality {}",
        "object_psnr": "object {:g} dB",
        "background_psnr": "background {:g} dB",
        "max_steps": "max {} steps",
    }
    if codec.get("warm_frames") and est.settings["scene"] == "off":
        named.update(warm_frames="warm start from {} frames", warm_steps="{} steps a frame")
    settings = [f"codec {est.codec}"] + [fmt.format(codec[k]) for k, fmt in named.items() if codec.get(k) is not None]
    settings += [f"batch {est.batch}", f"scene {est.settings['scene']}"]
    if est.settings["size"] or est.settings["max_side"]:
        settings.append(f"size {est.settings['size'] or est.settings['max_side']}")
    psnr = ", ".join(
        f"{name} {value:.2f} dB"
        for name, value in (("object", est.object_psnr), ("background", est.background_psnr))
        if value is not None
    )
    rows = [
        ("dataset", f"{src}: {est.frames} frames -> {est.shards} shard(s) of up to {est.settings['shard_size']}"),
        ("settings", ", ".join(settings)),
        (
            "sample",
            f"{len(est.sample)} frames ({_ranges(est.sample)}) in {est.sample_batches} batch(es), "
            f"{est.sample_seconds:.1f} s" + (f", {est.failed} failed" if est.failed else ""),
        ),
        ("machine", f"{est.cpus} CPU(s), {est.threads} torch thread(s) in {est.jobs} job(s), device {est.device}"),
        (
            "time",
            f"{est.seconds_per_frame:.3g} s/frame ({est.seconds_per_batch:.3g} s per batch of {est.batch}), "
            + (
                f"start-up {est.startup_seconds:.1f} s"
                if est.sample_batches > 1
                else "start-up included (one batch sampled)"
            ),
        ),
        ("size", f"{est.bytes_per_frame:,.0f} bytes/frame in shards (tar overhead included)"),
        ("PSNR", (psnr + " (sample means)") if psnr else "-"),
        (
            "projected",
            f"{est.projected_hours:.2f} h ({est.projected_seconds:,.0f} s) and {est.projected_bytes:,} bytes "
            f"({_binary(est.projected_bytes)}) for {est.frames} frames",
        ),
    ]
    return "\n".join(f"{name:<10} {value}" for name, value in rows)


def _ranges(indices: Sequence[int], most: int = 6) -> str:
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in runs]
    if len(parts) > most:
        parts = parts[: most - 2] + ["..."] + parts[-1:]
    return "indices " + ", ".join(parts)


def _binary(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.1f} {units[i]}"


if __name__ == "__main__":
    sys.exit(main())
