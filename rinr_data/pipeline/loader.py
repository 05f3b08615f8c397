"""RINRLoader: serve a RINRDataset through a StatefulDataLoader and decode each batch on the device.

Why a loader wrapper rather than Lightning's on_after_batch_transfer hook: it works in any training loop, it
keeps CUDA out of the worker processes by construction (workers only unpack and stack weights), and it owns
the resumable state (epoch + StatefulDataLoader state) that Lightning checkpoints through state_dict().

With cache="device" it also holds every sample's packed form on the device after its first use (cache.py), and
an epoch whose samples are all held is replayed from there: the same batches, without shards or workers.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision import tv_tensors

from ..core.devices import resolve_device
from ..decode import decode_packed, decode_packed_warped
from ..errors import FormatError
from .augment import (
    PAD_VALUE,
    AugmentConfig,
    augment_batch,
    build_transform,
    draw_geometries,
    letterbox_size,
)
from .cache import CACHE_MODES, DEFAULT_CACHE_BYTES, DeviceCache, PlannedBatch
from .dataset import LoaderBatch, RINRDataset


def _no_cuda_in_workers(_: int) -> None:
    """Worker init: make any CUDA initialisation in a DataLoader worker fail loudly instead of forking a context."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("CUDA must not be initialised in a DataLoader worker: decode runs in the main process")

    torch.cuda._lazy_init = refuse  # type: ignore[assignment]
    torch.cuda.init = refuse  # type: ignore[assignment]


@contextlib.contextmanager
def _cpu_threads(limit: int) -> Iterator[None]:
    """Cap torch's intra-op threads for a block, then restore them."""
    before = torch.get_num_threads()
    if limit >= before:
        yield
        return
    torch.set_num_threads(limit)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def letterbox(image: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize [3, h, w] to fit `size` (H, W) keeping its aspect ratio, pad right/bottom; scale boxes alike."""
    h, w = image.shape[-2:]
    if (h, w) == tuple(size):
        return image, boxes
    nh, nw = letterbox_size((h, w), size)
    resized = F.interpolate(image[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    canvas = torch.full((image.shape[0], *size), PAD_VALUE, dtype=image.dtype, device=image.device)
    canvas[:, :nh, :nw] = resized.clamp(0, 1)
    scaled = boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h], dtype=boxes.dtype, device=boxes.device)
    return canvas, scaled


class RINRLoader:
    """Iterate a RINRDataset with worker processes; yield {"images", "targets", "keys"} decoded on `device`.

    Args:
        dataset: the RINRDataset (its batch_size sets the batch size).
        num_workers: CPU worker processes that read shards and unpack records (0: in the main process).
        image_size: (H, W) every image is letterboxed to; None keeps the frame size (all frames must agree).
        augment: an AugmentConfig for device-side augmentation, or None. With its `at_decode` (the default) each
            frame's flip, scale jitter and crop are drawn before the decode, and latent-grid frames are rendered
            through them where that synthesises fewer pixels (other frames are decoded whole and resampled).
        device: where to decode; default the dataset's.
        pin_memory: pin worker output for asynchronous copies (default: when decoding on CUDA).
        prefetch_factor: batches each worker prepares ahead.
        cache: "device" to hold every sample's packed form and targets on `device` after its first use and replay
            an epoch whose samples are all held without reading shards or starting workers (same batches); None
            (default) reads every epoch through the workers. It sets the dataset's `fixed_shares`: under DDP each
            rank then reads (and holds) the same shards every epoch, shuffled within its share.
        cache_bytes: the cache's memory budget; a share that does not fit disables the cache with a warning.
    """

    def __init__(
        self,
        dataset: RINRDataset,
        num_workers: int = 0,
        image_size: tuple[int, int] | None = None,
        augment: AugmentConfig | None = None,
        device: str | torch.device | None = None,
        pin_memory: bool | None = None,
        prefetch_factor: int | None = None,
        cache: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
        self.dataset = dataset
        self.device = resolve_device(device if device is not None else dataset.device)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.augment = augment
        self.num_workers = num_workers
        pin = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.loader = StatefulDataLoader(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            pin_memory=pin,
            worker_init_fn=_no_cuda_in_workers if num_workers else None,
            prefetch_factor=prefetch_factor if num_workers else None,
        )
        self.epoch = dataset.epoch
        self._started = False
        self._restored = False
        self.cache: DeviceCache | None = None
        if cache == "device":
            # A rank that took a new share of a dataset-wide shuffle every epoch would end up holding every shard.
            dataset.fixed_shares = True
            counts = [s.samples for s in dataset.shards if s.samples is not None]
            share = -(-sum(counts) // dataset.world_size) if len(counts) == len(dataset.shards) else None
            self.cache = DeviceCache(self.device, cache_bytes, share)
        self._replaying = False  # the current (or last) epoch is served from the cache
        self._position = 0  # batches of the current epoch delivered (or skipped at a resume)
        self._skip = 0  # a position to resume at, saved in a replayed epoch
        self._resume_loader = False  # the StatefulDataLoader holds a state to resume from
        self._finished = False  # the current (or last) epoch was delivered to its end

    def __len__(self) -> int:
        n = self.dataset.batches_per_epoch(self.num_workers)
        if n is None:
            raise TypeError("batches per epoch are unknown: some shards have no sample count (remote, no manifest)")
        return n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._started and not self._restored:
            self.epoch += 1
        self._started, self._restored, self._finished = True, False, False
        self.dataset.set_epoch(self.epoch)
        skip, self._skip = self._skip, 0
        resume_loader, self._resume_loader = self._resume_loader, False
        self._position = skip
        cache = self.cache
        plan = cache.plan(self.dataset, self.num_workers) if cache is not None and not resume_loader else None
        self._replaying = plan is not None
        if cache is not None and plan is not None:
            yield from self._replay(cache, plan, skip)
            self._finished = True
            return
        self.dataset.record_order = self.cache is not None and self.cache.enabled
        delivered = 0
        for batch in self.loader:
            if self.cache is not None:
                self.cache.add(batch)
            if not len(batch):  # a worker's closing shard logs
                continue
            delivered += 1
            if delivered <= skip:  # resuming a replayed epoch's position without the cache: the workers start over
                continue
            self._position = delivered
            yield self.finish(batch)
        self._finished = True

    def _replay(self, cache: DeviceCache, plan: list[PlannedBatch], skip: int) -> Iterator[dict[str, Any]]:
        cache.replayed_epochs += 1
        for position in range(skip, len(plan)):
            batch = cache.batch(plan[position], self.epoch)
            self._position = position + 1
            yield self.finish(batch)

    def cache_stats(self) -> dict[str, Any] | None:
        """What the device cache holds (frames, bytes, bytes per frame, frames per GiB, budget); None without one."""
        return self.cache.stats() if self.cache is not None else None

    def state_dict(self) -> dict[str, Any]:
        """Epoch and position: the StatefulDataLoader's state (every worker's position), or in an epoch served from
        the device cache the number of batches delivered; after an epoch's last batch, only that it is done."""
        if self._finished:
            # The workers' end-of-stream state would resume inside the finished epoch: the next one starts instead.
            return {"epoch": self.epoch, "done": True}
        if self._replaying:
            return {"epoch": self.epoch, "position": self._position}
        return {"epoch": self.epoch, "loader": self.loader.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration continues the saved epoch after its last delivered batch (the next epoch when it
        was saved after the last)."""
        self.epoch = int(state["epoch"])
        self.dataset.set_epoch(self.epoch)
        if state.get("done"):  # saved after the epoch's last batch: the next iteration is the next epoch
            self._skip, self._resume_loader = 0, False
            self._started, self._restored, self._finished = True, False, True
            return
        if "position" in state:
            # Saved in a replayed epoch: replayed again if the cache holds the epoch, else read through fresh
            # workers from the epoch's start, the first `position` batches skipped (and cached) in this process.
            self._skip, self._resume_loader = int(state["position"]), False
        else:
            self.loader.load_state_dict(state["loader"])
            self._skip, self._resume_loader = 0, True
        self._started, self._restored = True, True

    def finish(self, batch: LoaderBatch) -> dict[str, Any]:
        """Decode on the device, letterbox, augment and build the training batch."""
        dev = self.device
        # A CPU decode shares the cores with the workers: OpenMP threads spinning on busy cores made it
        # 4-20x slower (docs/BENCHMARKS.md), so leave one core per worker.
        workers = 0 if self._replaying else self.num_workers  # a replayed epoch starts no workers
        limit = max(1, (os.cpu_count() or 1) - workers) if dev.type == "cpu" else 1 << 16
        frame_sizes = batch.packed.frame_sizes
        size = self.image_size
        if size is None:
            sizes = set(frame_sizes)
            if len(sizes) > 1:
                raise ValueError(f"frames of sizes {sorted(sizes)} in one batch: set image_size to letterbox them")
            size = sizes.pop()
        seed = zlib.crc32(f"{self.dataset.seed}/{batch.epoch}/{batch.worker}/{batch.index}".encode())
        augment = self.augment
        geometries = draw_geometries(augment, size, len(batch), seed) if augment and augment.at_decode else None
        try:
            with _cpu_threads(limit):
                if geometries is None:
                    images, warped = decode_packed(batch.packed, dev, as_float=True), [False] * len(batch)
                else:
                    warps = [g.warp(f) for g, f in zip(geometries, frame_sizes)]
                    # Rendered through its warp only where that synthesises fewer pixels than the frame has (not
                    # for upscales): else decoded whole and resampled, which is also closer to the source there.
                    chosen = [w if w.pixels(f) <= f[0] * f[1] else None for w, f in zip(warps, frame_sizes)]
                    images, warped = decode_packed_warped(batch.packed, chosen, dev, fill=PAD_VALUE, as_float=True)
        except FormatError as exc:
            raise FormatError(f"batch of samples {list(batch.keys)}: {exc}") from exc
        boxes = [b.to(dev, non_blocking=True) for b in batch.boxes]
        labels = [lab.to(dev, non_blocking=True) for lab in batch.labels]
        if geometries is None:
            pairs = [letterbox(img, b, size) for img, b in zip(images, boxes)]
            stacked = torch.stack([p[0] for p in pairs])
            boxes = [p[1] for p in pairs]
            if augment is not None:
                stacked, boxes, labels = augment_batch(stacked, boxes, labels, build_transform(augment, size), seed)
        else:
            frames = [
                img if done else g.resample(letterbox(img, b, size)[0])
                for img, b, g, done in zip(images, boxes, geometries, warped)
            ]
            mapped = [g.map_boxes(b, lab, f) for g, b, lab, f in zip(geometries, boxes, labels, frame_sizes)]
            boxes, labels = [m[0] for m in mapped], [m[1] for m in mapped]
            rest = build_transform(augment, size, geometric=False)  # type: ignore[arg-type]
            stacked, boxes, labels = augment_batch(torch.stack(frames), boxes, labels, rest, seed)
        targets = [
            {
                "boxes": tv_tensors.BoundingBoxes(b.reshape(-1, 4).to(torch.float32), format="XYXY", canvas_size=size),
                "labels": lab.to(torch.int64),
            }
            for b, lab in zip(boxes, labels)
        ]
        return {"images": stacked, "targets": targets, "keys": list(batch.keys)}
