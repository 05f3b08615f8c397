"""Loader benchmark: images/s that RINR and JPEG shards deliver into a fixed training step, and data wait.

First the CPU cost per image of what a loader worker does (read the shard, parse every record, pack the batch; for
JPEG shards, decode with Pillow), iterating the dataset in this process on one thread, and the host's CPU cost per
image of an epoch served from the device cache with the synthesis taken off the clock (grid groups "render" to
uninitialised frames of the right shape: what is timed is what the host does besides the synthesis kernels; on a
CPU-only machine the per-pixel rounding and stacking still run on the host, on a GPU they are kernels too).

Then, for each codec and worker count, one warm-up epoch then timed epochs through RINRLoader: every batch is
handed to a fixed-length "training step" (a GPU matmul loop when decoding on CUDA; a sleep on CPU, which
stands for an accelerator step that leaves the host free), and the time spent waiting for the next batch is
recorded. Ratios compare RINR against JPEG measured in the same process. With `--cache device` the RINR loader is also
run with its device cache: the warm-up epoch fills it and the timed epochs are served from it (no shard reading,
no workers), reported as its own columns.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from lightning_modules.data import CodecDataset
from rinr_data import PRESETS, RINRDataset, RINRLoader, codecs
from rinr_data.codecs.grid.packing import PackedGrids
from rinr_data.convert import ConvertConfig, encode_dataset
from rinr_data.core.devices import resolve_device
from rinr_data.sources import open_source

from .common import SHARED_DATA, codec_config, machine


def make_shards(
    data: Path,
    out: Path,
    codec: str,
    max_steps: int,
    shard_size: int,
    device: torch.device,
    preset: str = codecs.DEFAULT,
) -> Path:
    """Convert `data` into shards of `codec` (for "rinr": INR codec `preset`) under `out` (resumes if already
    there), fitting on `device`."""
    config = ConvertConfig(
        codec=codec,
        shard_size=shard_size,
        batch=16,
        codec_config=codec_config(preset, max_steps=max_steps, eval_every=max(1, max_steps // 4), device=str(device)),
    )
    encode_dataset(open_source(data), out, config, progress=False, log=lambda m: None)
    return out


class Step:
    """A training step of fixed length on the device."""

    def __init__(self, device: torch.device, ms: float) -> None:
        self.device, self.ms = device, ms
        self.iters = 0
        if device.type == "cuda" and ms > 0:
            self.a = torch.randn(2048, 2048, device=device)
            torch.cuda.synchronize()
            t, n = time.perf_counter(), 20
            for _ in range(n):
                self.a @ self.a
            torch.cuda.synchronize()
            self.iters = max(1, round(ms / ((time.perf_counter() - t) * 1000 / n)))

    def __call__(self, images: torch.Tensor) -> None:
        if self.ms <= 0:
            return
        if self.iters:
            for _ in range(self.iters):
                self.a @ self.a
            torch.cuda.synchronize()
        else:
            time.sleep(self.ms / 1000)


def run(
    shards: Path,
    workers: int,
    args: argparse.Namespace,
    device: torch.device,
    cache: str | None = None,
    nvjpeg: bool = False,
) -> dict[str, Any]:
    """Images/s and mean wait per step over the timed epochs (and what a device cache held); `nvjpeg`: JPEG shards
    decoded in batches on the GPU (torchvision's nvJPEG, as `JPEGDataModule(gpu_decode=True)`), not by Pillow."""
    # Listing the shards `repeat` times makes an epoch long enough that worker start-up does not dominate it.
    source = sorted(str(s) for s in shards.glob("*.tar")) * args.repeat if args.repeat > 1 else shards
    if nvjpeg:
        dataset: RINRDataset = CodecDataset(
            source, batch_size=args.batch_size, device=device, codecs=("jpeg",), owner="bench", encoded_jpeg=True
        )
    else:
        dataset = RINRDataset(source, batch_size=args.batch_size, device=device)
    loader = RINRLoader(
        dataset,
        num_workers=workers,
        image_size=None,
        cache=cache,
        cache_bytes=int(args.cache_gib * 2**30),
    )
    step = Step(device, args.step_ms)
    for _ in loader:  # warm-up epoch: worker start, page cache (and filling the device cache)
        pass
    images, waits, t0 = 0, [], time.perf_counter()
    for _ in range(args.epochs):
        it = iter(loader)
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            if device.type == "cuda":
                torch.cuda.synchronize()
            waits.append(time.perf_counter() - t)
            step(batch["images"])
            images += len(batch["keys"])
    total = time.perf_counter() - t0
    return {
        "images_s": images / total,
        "wait_ms": statistics.fmean(waits) * 1000,
        "steps": len(waits),
        "cache": loader.cache_stats(),
    }


def _dataset_source(shards: Path, repeat: int) -> Any:
    return sorted(str(s) for s in shards.glob("*.tar")) * repeat if repeat > 1 else shards


def worker_cpu_ms(shards: Sequence[Path], args: argparse.Namespace) -> tuple[list[float], float]:
    """CPU ms per image of iterating each dataset in this process on one thread (a loader worker's whole job), each
    in the cheapest of its timed epochs; and the median over epochs of the first dataset's epoch over the second's.

    The datasets' epochs alternate, so a change in the machine's speed (other tenants of a VM) falls on both alike:
    the paired ratio is steadier than the ratio of the two bests."""
    datasets = [RINRDataset(_dataset_source(s, args.repeat), batch_size=args.batch_size, device="cpu") for s in shards]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for dataset in datasets:  # warm-up: imports, page cache
            for _ in dataset:
                pass
        epochs: list[list[float]] = [[] for _ in datasets]
        for epoch in range(args.epochs):
            for dataset, times in zip(datasets, epochs):
                dataset.set_epoch(epoch + 1)
                t0 = time.process_time()
                images = sum(len(batch.keys) for batch in dataset)
                times.append((time.process_time() - t0) * 1000 / images)
        paired = [a / b for a, b in zip(epochs[0], epochs[-1])]
        return [min(times) for times in epochs], statistics.median(paired)
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _synthesis_off() -> Iterator[None]:
    """Grid groups render to uninitialised frames of their size: the host's work without the synthesis kernels (on
    a GPU the host only launches those, a few launches per batch)."""

    def empty_frames(self: PackedGrids, device: torch.device) -> list[torch.Tensor]:
        return [torch.empty(3, self.height, self.width, device=device) for _ in self.members]

    real = PackedGrids.render
    PackedGrids.render = empty_frames  # type: ignore[method-assign]
    try:
        yield
    finally:
        PackedGrids.render = real  # type: ignore[method-assign]


def cached_host_cpu_ms(
    shards: Path, args: argparse.Namespace, device: torch.device
) -> tuple[float, dict[str, Any] | None]:
    """Host CPU ms per image of epochs served from the device cache (one thread), the synthesis kernels excluded."""
    loader = RINRLoader(
        RINRDataset(_dataset_source(shards, args.repeat), batch_size=args.batch_size, device=device),
        num_workers=0,
        image_size=None,
        cache="device",
        cache_bytes=int(args.cache_gib * 2**30),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in loader:  # fills the cache (and renders: the synthesis is only taken off the timed epochs)
            pass
        with _synthesis_off():
            images, t0 = 0, time.process_time()
            for _ in range(args.epochs):
                images += sum(len(batch["keys"]) for batch in loader)
            return (time.process_time() - t0) * 1000 / images, loader.cache_stats()
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    """Build shards if needed, run every configuration, print a markdown table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rinr", type=Path, help="rinr shard folder (default: converted from --data)")
    p.add_argument("--jpeg", type=Path, help="jpeg shard folder (default: converted from --data)")
    p.add_argument("--data", type=Path, default=SHARED_DATA / "vtest-long")
    p.add_argument(
        "--preset",
        default=codecs.DEFAULT,
        choices=PRESETS,
        help="INR codec of the rinr shards converted from --data (default: %(default)s)",
    )
    p.add_argument("--max-steps", type=int, default=100, help="fitting steps when converting --data (speed only)")
    p.add_argument("--shard-size", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    p.add_argument("--step-ms", type=float, default=20.0, help="length of the simulated training step")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=1, help="read every shard this many times per epoch")
    p.add_argument(
        "--cache",
        choices=("none", "device"),
        default="none",
        help="'device': also time the RINR loader with its device cache (timed epochs served from the cache)",
    )
    p.add_argument("--cache-gib", type=float, default=2.0, help="the device cache's budget in GiB")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message="'set_vital' is deprecated")

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="rinr-bench-loader-") as tmp:
        rinr = args.rinr or make_shards(
            args.data, Path(tmp) / "rinr", "rinr", args.max_steps, args.shard_size, device, args.preset
        )
        jpeg = args.jpeg or make_shards(args.data, Path(tmp) / "jpeg", "jpeg", args.max_steps, args.shard_size, device)
        (cpu_r, cpu_j), paired = worker_cpu_ms([rinr, jpeg], args)
        cpu_cached, cpu_held = cached_host_cpu_ms(rinr, args, device)
        rows, held = [], None
        cached = args.cache == "device"
        nvjpeg = device.type == "cuda"  # batched nvJPEG needs a GPU
        for workers in (int(w) for w in args.workers.split(",")):
            r = run(rinr, workers, args, device)
            j = run(jpeg, workers, args, device)
            row = (
                f"| {workers} | {r['images_s']:.1f} | {j['images_s']:.1f} | "
                f"{r['images_s'] / j['images_s']:.2f}x | {r['wait_ms']:.1f} | {j['wait_ms']:.1f} |"
            )
            if nvjpeg:
                n = run(jpeg, workers, args, device, nvjpeg=True)
                row += f" {n['images_s']:.1f} | {r['images_s'] / n['images_s']:.2f}x |"
            if cached:
                c = run(rinr, workers, args, device, cache="device")
                held = c["cache"]
                served = "" if held["replayed_epochs"] == args.epochs else " (not all from the cache)"
                row += f" {c['images_s']:.1f}{served} | {c['images_s'] / j['images_s']:.2f}x | {c['wait_ms']:.1f} |"
            rows.append(row)
    converted = "" if args.rinr else f"; RINR shards of preset {args.preset}"
    print(
        f"Loader benchmark on {machine(device)}; decode on {device}{converted}; "
        f"batch {args.batch_size}, {args.step_ms:g} ms step, {args.epochs} timed epochs"
        f"{f' of every shard {args.repeat} times' if args.repeat > 1 else ''}.\n"
    )
    print(
        "CPU ms per image, one thread (issue 23's targets: epoch 1 <= 0.5x JPEG, cached epochs <= 0.05x JPEG); "
        "RINR/JPEG: ratio of the bests, and the median of the epochs' paired ratios (RINR and JPEG epochs "
        "alternate):\n\n"
        "| loader worker, RINR | loader worker, JPEG + Pillow | RINR/JPEG | paired | host, RINR from the device cache "
        "| cached/JPEG |\n|---|---|---|---|---|---|\n"
        f"| {cpu_r:.3f} | {cpu_j:.3f} | {cpu_r / cpu_j:.2f}x | {paired:.2f}x | {cpu_cached:.4f} "
        f"| {cpu_cached / cpu_j:.3f}x |\n"
    )
    if cpu_held is None or not cpu_held["enabled"] or cpu_held["replayed_epochs"] != args.epochs:
        print("(the device cache did not serve every timed epoch: raise --cache-gib)\n")
    head = "| workers | RINR img/s | JPEG img/s | RINR/JPEG | RINR wait ms/step | JPEG wait ms/step |"
    if device.type == "cuda":
        head += " JPEG nvJPEG img/s | RINR/nvJPEG |"
    if cached:
        head += " RINR cached img/s | cached/JPEG | cached wait ms/step |"
    print(head)
    print("|---" * head.count(" | ") + "|---|")
    print("\n".join(rows))
    if held is not None:
        state = "" if held["enabled"] else " (disabled: over --cache-gib)"
        print(
            f"\nDevice cache{state}: {held['frames']} frames, {held['bytes'] / 2**20:.1f} MiB on {held['device']}, "
            f"{held['bytes_per_frame']:.0f} bytes per frame ({held['frames_per_gib']:.0f} frames per GiB)."
        )
    return 0
