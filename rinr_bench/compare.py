"""Like-for-like codec comparisons: frame-index splits, lossless reference shards, matched JPEG qualities.

What the accuracy benchmark and the demo need around `encode_dataset`: a train/validation split of a source by
frame index (so validation frames are never seen in training), shards of the original frames stored losslessly
(WebP lossless, checked pixel-exact) to evaluate on, the per-frame bytes and PSNRs a shard folder achieves, and
the single JPEG quality that matches a RINR shard set's object PSNR or its bytes.
"""

from __future__ import annotations

import io
import math
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from rinr_data import shards
from rinr_data.codecs.classic import decode_classic, encode_classic, quality_range
from rinr_data.convert import ConvertConfig, build_manifest, plan_shards
from rinr_data.core.frames import to_chw_uint8
from rinr_data.core.metrics import region_psnr
from rinr_data.sources import LoadedSample, Source, load_sample


def split_source(
    source: Source, train: int | None = None, val: int | None = None, val_fraction: float = 0.25
) -> tuple[Source, Source]:
    """(train, val) sources by frame index: the first `train` items and the last `val` items, disjoint.

    Frame index is the position in the source's order (COCO: its `images` list; VOC/YOLO/folder: sorted paths).
    `val` defaults to `val_fraction` of the items (at least 1), `train` to every item before the validation ones.
    """
    n = len(source.items)
    n_val = val if val is not None else max(1, round(n * val_fraction))
    n_train = train if train is not None else n - n_val
    if n_train < 1 or n_val < 1:
        raise ValueError(f"need at least one training and one validation frame, got train={n_train}, val={n_val}")
    if n_train + n_val > n:
        raise ValueError(f"{source.root}: {n} frames, fewer than train={n_train} + val={n_val}")
    return replace(source, items=source.items[:n_train]), replace(source, items=source.items[n - n_val :])


def load_samples(
    source: Source, size: tuple[int, int] | None = None, max_side: int | None = None, workers: int = 2
) -> list[LoadedSample]:
    """Every sample of `source`, read and resized as encode_dataset would (raises on a bad sample)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(lambda item: load_sample(item, size, max_side), source.items))


# ---------------------------------------------------------------------------------------------- lossless shards


def encode_lossless(image: np.ndarray) -> bytes:
    """HxWx3 uint8 -> lossless WebP bytes; checked to decode to exactly the same pixels."""
    buf = io.BytesIO()
    # exact=True keeps RGB values under alpha 0 too; quality is the effort for lossless WebP.
    Image.fromarray(np.ascontiguousarray(image)).save(buf, "WEBP", lossless=True, quality=50, method=4, exact=True)
    data = buf.getvalue()
    back = decode_classic(data)
    if not torch.equal(back, to_chw_uint8(image)):
        raise RuntimeError("lossless WebP did not round-trip exactly; this Pillow/libwebp cannot store originals")
    return data


def write_lossless_shards(
    source: Source,
    out: str | Path,
    *,
    size: tuple[int, int] | None = None,
    max_side: int | None = None,
    shard_size: int = 1000,
    workers: int = 2,
    images: Sequence[torch.Tensor] | None = None,
    codec_config: dict | None = None,
    samples: Sequence[LoadedSample] | None = None,
) -> Path:
    """Shards of the original frames (after any resize) as lossless WebP, with the usual manifest; returns `out`.

    The layout is docs/SHARDS.md's with codec "webp"; the manifest's `codec_config` is `{"lossless": true}` and
    both PSNRs are stored as 999 (lossless). Any JPEG/WebP reader (JPEGDataModule) reads them. `images` (uint8
    [3, H, W] in the source's order, e.g. what a video decoder gave back) are stored instead of the originals, with
    their PSNRs against them, and `codec_config` says what made them. `samples` (as `load_samples` gives them, with
    the same `size` / `max_side`) spares reading the frames again.
    """
    for name, given in (("images", images), ("samples", samples)):
        if given is not None and len(given) != len(source.items):
            raise ValueError(f"{len(given)} {name} for {len(source.items)} frames of {source.root}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = ConvertConfig(codec="webp", size=size, max_side=max_side, shard_size=shard_size, workers=workers)
    infos = []

    def one(index: int) -> shards.ShardSample:
        sample = samples[index] if samples is not None else load_sample(source.items[index], size, max_side)
        image, quality = sample.image, (math.inf if len(sample.boxes) else math.nan, math.inf)
        if images is not None:
            if tuple(images[index].shape) != (3, sample.height, sample.width):
                raise ValueError(
                    f"{sample.item.source}: image {tuple(images[index].shape)} for a {sample.width}x"
                    f"{sample.height} frame"
                )
            image = images[index].permute(1, 2, 0).numpy()
            scores = region_psnr(to_chw_uint8(sample.image), images[index], sample.boxes)
            quality = (scores.objects, scores.background)
        meta = shards.sample_meta(
            sample.width, sample.height, sample.boxes, sample.labels, sample.item.source, *quality
        )
        return shards.ShardSample(sample.item.key, "webp", encode_lossless(image), meta)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, rows in enumerate(plan_shards(len(source.items), shard_size)):
            infos.append(shards.write_shard(out, shards.shard_name(config.prefix, i), pool.map(one, rows)))
    manifest = build_manifest(source, config, infos)
    manifest["codec_config"] = {"lossless": True} if codec_config is None else codec_config
    shards.write_manifest(out, manifest)
    return out


# ---------------------------------------------------------------------------------------------- what shards hold


@dataclass(frozen=True)
class ShardStats:
    """Per-frame means over a shard folder: image-member bytes (plus scene records, shared out over all frames) and
    the PSNRs the samples' JSON reports.

    `object_psnr` averages frames with boxes, `background_psnr` frames with background; lossless (999) counts
    as is, so compare lossy folders only.
    """

    codec: str
    frames: int
    bytes_per_frame: float
    object_psnr: float
    background_psnr: float


def shard_stats(folder: str | Path) -> ShardStats:
    """ShardStats of a shard folder (read from its manifest and every sample's JSON)."""
    folder = Path(folder)
    manifest = shards.read_manifest(folder)
    sizes, objects, backgrounds = [], [], []
    scene_bytes = 0
    for entry in manifest["shards"]:
        for sample in shards.iter_shard(folder / entry["name"]):
            meta = shards.sample_json(sample)
            sizes.append(len(shards.image_member(sample)[1]))
            scene_bytes += sum(len(blob) for blob in shards.scene_members([sample]).values())
            if meta["object_psnr"] is not None:
                objects.append(float(meta["object_psnr"]))
            if meta["background_psnr"] is not None:
                backgrounds.append(float(meta["background_psnr"]))
    per_frame = _mean(sizes) + (scene_bytes / len(sizes) if sizes else 0.0)
    return ShardStats(str(manifest["codec"]), len(sizes), per_frame, _mean(objects), _mean(backgrounds))


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


# ---------------------------------------------------------------------------------------------- matched qualities


@dataclass(frozen=True)
class QualityPoint:
    """A classic codec at one quality over a set of frames: mean bytes, object and background PSNR per frame."""

    quality: int
    bytes_per_frame: float
    object_psnr: float
    background_psnr: float


class QualityScan:
    """Scores a classic codec at any quality over a fixed set of frames (cached), for quality searches.

    Means follow ShardStats: per-frame PSNR pooled over that frame's box pixels (or background pixels), averaged
    over frames, so a scan point compares directly with `shard_stats` of a RINR folder of the same frames.
    """

    def __init__(self, samples: Sequence[LoadedSample], codec: str = "jpeg", workers: int = 2) -> None:
        self.frames = [(to_chw_uint8(s.image), s.boxes) for s in samples]
        if not self.frames:
            raise ValueError("no frames to scan")
        self.codec, self.workers = codec, workers
        self._cache: dict[int, QualityPoint] = {}

    def __call__(self, quality: int) -> QualityPoint:
        """The point at `quality`."""
        if quality not in self._cache:

            def one(frame: tuple[torch.Tensor, np.ndarray]) -> tuple[int, float, float]:
                chw, boxes = frame
                data = encode_classic(chw, self.codec, quality)
                q = region_psnr(chw, decode_classic(data, tuple(chw.shape[1:])), boxes)
                return len(data), q.objects, q.background

            with ThreadPoolExecutor(max(1, self.workers)) as pool:
                rows = list(pool.map(one, self.frames))
            objects = [r[1] for r in rows if not math.isnan(r[1])]
            backgrounds = [r[2] for r in rows if not math.isnan(r[2])]
            sizes = [r[0] for r in rows]
            self._cache[quality] = QualityPoint(quality, _mean(sizes), _mean(objects), _mean(backgrounds))
        return self._cache[quality]

    def lowest(self, passes: Callable[[QualityPoint], bool]) -> QualityPoint | None:
        """Lowest quality whose point passes (assumed monotone: once a quality passes, every higher one does)."""
        qs = list(quality_range(self.codec))
        if not passes(self(qs[-1])):
            return None
        lo, hi = -1, len(qs) - 1  # qs[hi] passes; qs[lo] fails (or lo = -1)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if passes(self(qs[mid])) else (mid, hi)
        return self(qs[hi])

    def at_object_psnr(self, target: float) -> QualityPoint | None:
        """Cheapest quality whose mean object PSNR reaches `target` dB, or None if even the best does not."""
        return self.lowest(lambda p: p.object_psnr >= target)

    def at_bytes(self, target: float) -> QualityPoint:
        """Highest quality whose mean bytes per frame stay within `target` (the lowest quality if none does)."""
        first_over = self.lowest(lambda p: p.bytes_per_frame > target)
        qs = list(quality_range(self.codec))
        if first_over is None:
            return self(qs[-1])
        return self(max(qs[0], first_over.quality - 1))
