"""Scale-out of encoding under torchrun: N processes against one, on the same frames and the same warm start.

Takes the first `--frames` frames of a COCO dataset (a subset folder under `--work`), learns the warm start once in
this process and gives every run a copy (as a resumed run or a torchrun rank reads rank 0's), then runs
`tools/encode.py` under `torch.distributed.run --standalone --nproc_per_node N` for each N of `--procs`, every
process with `--threads` torch threads, and times each run from launch to exit (start-up included: a user pays it).
Prints frames/s, frames/s per process and the scaling efficiency, frames/s with N processes over N times the rate
of the first; the shards of every run are checked byte for byte against the first run's (the ranks split whole
shards, so scale-out must not change a record).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rinr_data import shards
from rinr_data.cli.encode import build_config, build_parser
from rinr_data.convert import WARM_FILE, warm_up
from rinr_data.sources import open_source

from .common import ROOT, SHARED_DATA, machine


def coco_subset(data: Path, frames: int, out: Path) -> Path:
    """A COCO folder under `out` holding the first `frames` images of `data` (images linked, not copied)."""
    ann = json.loads((data / "annotations.json").read_text())
    images = ann["images"][:frames]
    if len(images) < frames:
        raise ValueError(f"{data}: {len(ann['images'])} images, fewer than {frames}")
    ids = {im["id"] for im in images}
    out.mkdir(parents=True, exist_ok=True)
    subset = {**ann, "images": images, "annotations": [a for a in ann["annotations"] if a["image_id"] in ids]}
    (out / "annotations.json").write_text(json.dumps(subset))
    link = out / "images"
    if not link.exists():
        link.symlink_to((data / "images").resolve(), target_is_directory=True)
    return out


def run_encode(src: Path, out: Path, procs: int, threads: int, options: list[str]) -> float:
    """Wall seconds of one `tools/encode.py` run under torchrun with `procs` processes of `threads` threads."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(procs),
        str(ROOT / "tools" / "encode.py"),
        str(src),
        str(out),
        "--no-progress",
        *options,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
    return seconds


def table(frames: int, threads: int, runs: list[tuple[int, float]]) -> str:
    """Markdown table of the runs, efficiency against the first."""
    procs0, seconds0 = runs[0]
    base = frames / seconds0 / procs0
    lines = [
        "| processes | torch threads each | wall s | frames/s | frames/s per process | efficiency vs the first |",
        "|---|---|---|---|---|---|",
    ]
    for procs, seconds in runs:
        rate = frames / seconds
        lines.append(
            f"| {procs} | {threads} | {seconds:.1f} | {rate:.3f} | {rate / procs:.3f} | {rate / procs / base:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; anything after `--` goes to rinr-encode as it is."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED_DATA / "vtest-long", help="COCO folder (default: %(default)s)")
    p.add_argument("--frames", type=int, default=32, help="first frames of the dataset encoded (default: %(default)s)")
    p.add_argument("--procs", default="1,2", help="comma-separated process counts (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default: %(default)s)")
    p.add_argument("--shard-size", type=int, default=8, help="frames per shard, the unit ranks split (%(default)s)")
    p.add_argument("--work", type=Path, required=True, help="folder for the subset and the runs' shards")
    p.add_argument("encode_args", nargs="*", help="after --: more rinr-encode options (e.g. --max-side 192)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the scale-out check and print its table."""
    args = parse_args(argv)
    procs = [int(n) for n in args.procs.split(",")]
    if not procs or min(procs) < 1:
        raise SystemExit(f"--procs needs counts >= 1, got {args.procs!r}")
    src = coco_subset(args.data, args.frames, args.work / "subset")
    options = ["--shard-size", str(args.shard_size), *args.encode_args]
    config = build_config(build_parser().parse_args([str(src), str(args.work / "warm"), *options]))
    print(f"{args.frames} frames of {args.data.name}, rinr-encode {' '.join(options)}; {machine()}", flush=True)
    start = time.perf_counter()
    warm_up(open_source(src), args.work / "warm", config, progress=False, log=lambda m: None)
    learned = shards.work_dir(args.work / "warm") / WARM_FILE
    print(f"  warm start: {time.perf_counter() - start:.0f} s, once ({'learned' if learned.is_file() else 'none'})")
    runs: list[tuple[int, float]] = []
    first: Path | None = None
    for n in procs:
        out = args.work / f"procs{n}"
        shutil.rmtree(out, ignore_errors=True)
        given = shards.work_dir(out) / WARM_FILE
        if learned.is_file():
            shards.work_dir(out).mkdir(parents=True)
            shutil.copy(learned, given)
        before = given.stat().st_mtime_ns if given.is_file() else None
        seconds = run_encode(src, out, n, args.threads, options)
        # A warm start is written atomically (a new file) whenever one is learned: the given copy must be untouched.
        if before is not None and given.stat().st_mtime_ns != before:
            raise RuntimeError(f"{out}: the run learned its own warm start instead of reading the one it was given")
        print(f"  {n} process(es): {seconds:.1f} s", flush=True)
        tars = sorted(p.name for p in out.glob("*.tar"))
        if first is None:
            first = out
        elif tars != sorted(p.name for p in first.glob("*.tar")) or any(
            (out / t).read_bytes() != (first / t).read_bytes() for t in tars
        ):
            raise SystemExit(f"{out}: shards differ from {first}'s: scale-out changed the records")
        runs.append((n, seconds))
    print(table(args.frames, args.threads, runs))
    return 0
