"""Encoding throughput: fits from scratch against fits from a dataset's warm start, on the same held-out frames.

The warm start is learned as `rinr-encode` learns it (on `--sample` frames spread over the dataset, chosen by the
same rule); the evaluation frames are spread over the dataset too and never among the sample. Both modes encode
them in batches of `--batch` in one process; the table gives seconds and frames per second, bytes and PSNRs per
frame, how many frames reach both targets, and the warm start's one-off cost spread over a dataset of
`--dataset-frames`.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rinr_data import GridConfig, codecs
from rinr_data.codecs.base import EncodedFrame
from rinr_data.codecs.grid.fit import COMPILE_MODES, check_precision
from rinr_data.convert import sample_indices, split_threads

from .benchdoc import replace_section
from .common import ROOT, SHARED_DATA, load_frames, machine

SECTION = "bench_encode"


@dataclass
class Run:
    """One mode's encoding of the evaluation frames."""

    name: str
    seconds: float  # wall time of the encode calls
    frames: list[EncodedFrame]

    @property
    def per_frame(self) -> float:
        """Wall seconds per frame."""
        return self.seconds / len(self.frames)

    def mean(self, field: str) -> float:
        """Mean over frames of an EncodedFrame field (`bytes` for the record size)."""
        return float(np.mean([len(f.blob) if field == "bytes" else getattr(f, field) for f in self.frames]))

    def reached(self, config: GridConfig) -> int:
        """Frames at or above both PSNR targets."""
        return sum(
            f.object_psnr >= config.object_psnr - 1e-9 and f.background_psnr >= config.background_psnr - 1e-9
            for f in self.frames
        )


def split(n_items: int, sample: int, frames: int) -> tuple[list[int], list[int]]:
    """The warm-start sample (rinr-encode's rule) and `frames` evaluation indices spread over the rest."""
    picked = sample_indices(n_items, sample) if sample else []
    rest = [i for i in range(n_items) if i not in set(picked)]
    if frames > len(rest):
        raise ValueError(f"{n_items} frames leave {len(rest)} outside the warm-start sample, fewer than {frames}")
    step = len(rest) / frames
    return picked, [rest[int((k + 0.5) * step)] for k in range(frames)]


def encode(name: str, images: list, boxes: list, config: GridConfig, batch: int, jobs: int = 1) -> Run:
    """Encode in batches of `batch`, `jobs` batches at once on a share of the torch threads each (as rinr-encode's
    `--jobs`), timed."""
    codec = codecs.get("grid")
    chunks = [(images[i : i + batch], boxes[i : i + batch]) for i in range(0, len(images), batch)]
    start = time.perf_counter()
    out: list[EncodedFrame] = []
    with ThreadPoolExecutor(jobs) as pool, split_threads(jobs):
        for frames in pool.map(lambda chunk: codec.encode(chunk[0], chunk[1], config), chunks):
            out += frames
            print(f"  {name}: {len(out)}/{len(images)} frames, {(time.perf_counter() - start) / len(out):.1f} s/frame")
    return Run(name, time.perf_counter() - start, out)


def table(runs: list[Run], config: GridConfig, learn_s: float, sample: int, dataset_frames: int) -> str:
    """Markdown table of the runs, ratios against the first."""
    base = runs[0]
    lines = [
        "| mode | steps/frame | s/frame | frames/s | bytes/frame | object dB | background dB | frames at both targets "
        "| bytes vs first row |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        counts = [f.steps["grid"] for f in run.frames]
        # A warm frame below a target after its budget takes some more (a top-up): the mean and the range then.
        steps = counts[0] if len(set(counts)) == 1 else f"{np.mean(counts):.0f} ({min(counts)}-{max(counts)})"
        lines.append(
            f"| {run.name} | {steps} | {run.per_frame:.2f} | {1 / run.per_frame:.3f} | {run.mean('bytes'):,.0f} | "
            f"{run.mean('object_psnr'):.2f} | {run.mean('background_psnr'):.2f} | {run.reached(config)}/"
            f"{len(run.frames)} | {run.mean('bytes') / base.mean('bytes'):.3f}x |"
        )
    if learn_s:
        warm = runs[-1]
        spread = learn_s / dataset_frames
        lines.append("")
        lines.append(
            f"Learning the warm start ({sample} frames: {config.max_steps} steps with one shared synthesis, then "
            f"{config.warm_steps} steps of calibration) took "
            f"{learn_s:.0f} s once: {spread:.2f} s/frame over a {dataset_frames:,}-frame dataset, so a warm frame "
            f"costs {warm.per_frame + spread:.2f} s in all"
            + (
                f", {base.per_frame / (warm.per_frame + spread):.1f}x faster than '{base.name}'."
                if base is not warm
                else "."
            )
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data", type=Path, default=SHARED_DATA / "vtest-long", help="dataset folder (default: %(default)s)"
    )
    p.add_argument("--frames", type=int, default=8, help="evaluation frames (default: %(default)s)")
    p.add_argument("--sample", type=int, help="warm-start frames (default: GridConfig's warm_frames)")
    p.add_argument("--warm-steps", type=int, help="steps of a warm fit (default: GridConfig's)")
    p.add_argument(
        "--max-steps", type=int, help="steps of a fit from scratch and of the sample (default: GridConfig's)"
    )
    p.add_argument("--batch", type=int, default=4, help="frames per fitting call (default: %(default)s)")
    p.add_argument(
        "--jobs",
        default="1",
        help="comma-separated fitting calls at once (rinr-encode's --jobs), one warm run each; the fits from "
        "scratch use the first (default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    p.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default="auto",
        help="the fitting step under torch.compile (GridConfig.compile); its one-off compilation is timed apart, "
        "before the runs (default: %(default)s)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        help="comma-separated GridConfig.precision values (auto, float32, bfloat16): the fits from scratch and the "
        "warm start use the first, the warm fits run once per value from that one warm start (default: %(default)s)",
    )
    p.add_argument("--no-scratch", action="store_true", help="skip the fits from scratch (the slow baseline)")
    p.add_argument(
        "--dataset-frames", type=int, default=50_000, help="dataset size the one-off cost is spread over (%(default)s)"
    )
    p.add_argument("--write", default=str(ROOT / "docs" / "BENCHMARKS.md"), help="'' to skip writing")
    p.add_argument("--section", default=SECTION, help="name of the generated section (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, rewrite the BENCHMARKS.md section."""
    args = parse_args(argv)
    jobs = [int(j) for j in args.jobs.split(",")]
    precisions = args.precision.split(",")
    for precision in precisions:
        check_precision(precision)
    fields = {k: getattr(args, k) for k in ("warm_steps", "max_steps") if getattr(args, k) is not None}
    config = GridConfig(device=args.device, compile=args.compile, precision=precisions[0], **fields)
    sample = config.warm_frames if args.sample is None else args.sample
    config = config.replace(warm_frames=sample)
    images, boxes, names = load_frames(args.data, 0)
    picked, evaluated = split(len(images), sample, args.frames)
    print(f"warm-start sample: {[names[i] for i in picked]}\nevaluated: {[names[i] for i in evaluated]}")
    ev_images, ev_boxes = [images[i] for i in evaluated], [boxes[i] for i in evaluated]
    # Compiling costs once per process and frame size (seconds from inductor's on-disk cache): done before the clock
    # starts, on one batch fitted for two steps (one noisy, one rounded: both of the step's graphs).
    start = time.perf_counter()
    short = config.replace(max_steps=2, warm_steps=2, warm=None)
    for precision in precisions:  # a graph per precision too
        codecs.get("grid").encode(ev_images[: args.batch], ev_boxes[: args.batch], short.replace(precision=precision))
    print(f"  warm-up (compilation with --compile {args.compile}): {time.perf_counter() - start:.0f} s")
    runs = []
    if not args.no_scratch:
        runs.append(encode("from scratch", ev_images, ev_boxes, config.replace(warm=None), args.batch, jobs[0]))
    learn_s = 0.0
    if sample:
        start = time.perf_counter()
        warm = codecs.get("grid").learn_warm_start([images[i] for i in picked], [boxes[i] for i in picked], config)
        learn_s = time.perf_counter() - start
        print(f"  warm start learned in {learn_s:.0f} s")
        for precision in precisions:
            for n in jobs:
                label = "warm start" if len(jobs) == 1 and n == 1 else f"warm start, {n} job{'s' if n > 1 else ''}"
                label += f", {precision}" if len(precisions) > 1 else ""
                runs.append(
                    encode(label, ev_images, ev_boxes, config.replace(warm=warm, precision=precision), args.batch, n)
                )
    if not runs:
        raise SystemExit("nothing to measure: --no-scratch and --sample 0")
    text = table(runs, config, learn_s, sample, args.dataset_frames)
    print(text)
    if args.write:
        header = (
            f"Measured by `tools/bench_encode.py --frames {args.frames} --batch {args.batch} --device {args.device}"
            f"{f' --jobs {args.jobs}' if args.jobs != '1' else ''}{' --no-scratch' if args.no_scratch else ''}"
            f"{f' --warm-steps {args.warm_steps}' if args.warm_steps else ''} --compile {args.compile}"
            f" --precision {args.precision}` "
            f"on {machine(torch.device(args.device) if args.device != 'auto' else None)}, "
            f"{time.strftime('%Y-%m-%d')}: {args.data.name}, {len(evaluated)} evaluation frames outside the "
            f"{sample}-frame warm-start sample; targets {config.object_psnr:g} / {config.background_psnr:g} dB."
        )
        replace_section(
            Path(args.write),
            f"<!-- {args.section}:begin -->",
            f"<!-- {args.section}:end -->",
            header + "\n\n" + text,
            heading="### `bench_encode.py`: encoding throughput",
        )
    return 0
