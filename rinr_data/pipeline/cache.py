"""Device cache: each sample's packed form and targets, held on the decode device after its first use, and the
replay of an epoch's batches from them with no shard reading, no parsing and no worker processes.

An epoch that goes through the workers (the first, or one that needs a sample not yet held) records, per shard, how
many samples the tar gave and which of them failed to parse, and hands every batch's frames to `DeviceCache.add`,
which splits its packed groups into one-frame groups (`Packed.split`, compact: integer latents, uint8 images) and
keeps them on the device. An epoch whose samples are all held is planned here, exactly as the workers would batch
it: each (rank, worker) plan of the dataset, each shard's sample list permuted by `stages.shuffle_within_shards`,
failed samples left out, `stages.batched` with the dataset's quota, then the batches of the workers interleaved
round robin (worker 0's batch 0, worker 1's batch 0, ..., a worker that ran out skipped), which is the order in which
torch's DataLoader yields an IterableDataset's batches. A planned batch merges its frames back (`Packed.merge`) into
the groups a worker would have packed, so the decode is the same batched render, bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import torch

from ..codecs.base import Packed
from ..decode import PackedBatch
from . import stages
from .dataset import LoaderBatch, RINRDataset, ShardLog
from .shardlist import ShardRef

DEFAULT_CACHE_BYTES = 2 << 30  # 2 GiB per loader
CACHE_MODES = (None, "device")

Origin = tuple[str, int]  # (shard url, position of the sample in the tar)


@dataclass
class CachedSample:
    """One held sample: its one-frame packed group and its targets, on the cache's device."""

    key: str
    packed: Packed
    boxes: torch.Tensor
    labels: torch.Tensor
    size: tuple[int, int]
    nbytes: int


@dataclass(frozen=True)
class PlannedBatch:
    """A batch of a replayed epoch: the worker that would have produced it, its index there, its samples."""

    worker: int
    index: int
    origins: list[Origin]


class _Unknown(Exception):
    """A plan reached a shard whose samples were never recorded."""


def tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor inside `obj` (tensors, lists, tuples, dicts and dataclasses, nested)."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(x) for x in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(x) for x in obj.values())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(tensor_bytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


def merge_frames(frames: Sequence[Packed]) -> list[Packed]:
    """One-frame groups, in batch order, as batched groups whose members index `frames` (each class's `merge`; a
    class without one renders frame by frame)."""
    by_class: dict[type, list[int]] = {}
    for fi, frame in enumerate(frames):
        by_class.setdefault(type(frame), []).append(fi)
    groups: list[Packed] = []
    for cls, indices in by_class.items():
        merge = getattr(cls, "merge", None)
        if merge is None:
            for fi in indices:
                single = copy.copy(frames[fi])  # the held group itself is never changed
                single.members = [fi]
                groups.append(single)
            continue
        for group in merge([frames[fi] for fi in indices]):
            group.members = [indices[m] for m in group.members]
            groups.append(group)
    return groups


class DeviceCache:
    """Samples held on `device` within `budget` bytes, keyed by origin, plus the shard logs that order them.

    Budget policy: the first sample that would take the cache past its budget (or a device out-of-memory error while
    filling it) disables the cache for good, with one warning stating the bytes the share needs; what was held is
    released and every epoch goes through the workers, as without the cache. It never fails an epoch.
    """

    def __init__(self, device: torch.device, budget: int = DEFAULT_CACHE_BYTES, share: int | None = None) -> None:
        if budget <= 0:
            raise ValueError(f"cache_bytes must be > 0, got {budget}")
        self.device, self.budget, self.share = device, int(budget), share
        self.entries: dict[Origin, CachedSample] = {}
        self.shards: dict[str, tuple[int, frozenset[int]]] = {}  # url -> (samples in the tar, failed positions)
        self.bytes = 0
        self.enabled = True
        self.replayed_epochs = 0

    def record(self, logs: Iterable[ShardLog]) -> None:
        """Take shard logs from the workers (a shard read again keeps every failure seen)."""
        for log in logs:
            _, failed = self.shards.get(log.url, (0, frozenset()))
            self.shards[log.url] = (log.samples, failed | frozenset(log.failed))

    def add(self, batch: LoaderBatch) -> None:
        """Hold the batch's samples not yet held (a batch from a worker of a dataset with `record_order`)."""
        if batch.shards:
            self.record(batch.shards)
        if not self.enabled or not batch.origins or all(o in self.entries for o in batch.origins):
            return
        try:
            self._add(batch)
        except torch.cuda.OutOfMemoryError as exc:
            self.disable(f"the device ran out of memory while filling it ({str(exc).splitlines()[0]})")
        except Exception as exc:  # the cache only saves work: a failure to hold must not stop the epoch
            self.disable(f"holding a batch failed ({exc!r})")

    def _add(self, batch: LoaderBatch) -> None:
        frames: dict[int, Packed] = {}
        for group in batch.packed.groups:
            split = getattr(group, "split", None)
            if split is None:
                self.disable(f"{type(group).__name__} groups cannot be split into frames")
                return
            for part in split():
                frames[part.members[0]] = part
        for fi, origin in enumerate(batch.origins or []):
            if origin in self.entries:
                continue
            part, boxes, labels = frames[fi], batch.boxes[fi], batch.labels[fi]
            size = tensor_bytes(part) + tensor_bytes(boxes) + tensor_bytes(labels)
            if self.bytes + size > self.budget:
                self.disable(f"it would exceed cache_bytes ({self.budget / 2**30:.2f} GiB)", size)
                return
            self.entries[origin] = CachedSample(
                batch.keys[fi],
                part.to(self.device),
                boxes.to(self.device, copy=True),  # copies: a worker's shared-memory tensor is not kept alive
                labels.to(self.device, copy=True),
                batch.sizes[fi],
                size,
            )
            self.bytes += size

    def disable(self, reason: str, pending: int = 0) -> None:
        """Release everything held and stop caching, with one warning saying why and what the share needs."""
        frames = len(self.entries) + (1 if pending else 0)
        per_frame = (self.bytes + pending) / frames if frames else 0.0
        need = ""
        if per_frame and self.share:
            need = (
                f"; this rank's share of {self.share} frames needs about {per_frame * self.share / 2**30:.2f} GiB "
                f"({per_frame:.0f} bytes per frame)"
            )
        warnings.warn(
            f"device cache disabled: {reason}{need}; every epoch now reads its shards through the workers",
            stacklevel=3,
        )
        self.entries.clear()
        self.bytes = 0
        self.enabled = False

    def plan(self, dataset: RINRDataset, num_workers: int) -> list[PlannedBatch] | None:
        """The batches of the dataset's current epoch in loader order, or None unless every one is held."""
        if not self.enabled:
            return None
        workers = max(num_workers, 1)
        streams: list[list[list[Origin]]] = []
        try:
            for worker in range(workers):
                shards, quota = dataset.worker_plan(worker, workers)
                samples = self._samples(shards, dataset.seed, dataset.epoch, dataset.shuffle)
                streams.append(list(stages.batched(samples, dataset.batch_size, not dataset.drop_last, quota)))
        except _Unknown:
            return None
        planned = [
            PlannedBatch(worker, index, stream[index])
            for index in range(max((len(s) for s in streams), default=0))
            for worker, stream in enumerate(streams)
            if index < len(stream)
        ]
        if any(o not in self.entries for p in planned for o in p.origins):
            return None
        return planned

    def _samples(self, shards: list[ShardRef], seed: int, epoch: int, shuffle: bool) -> Iterator[Origin]:
        """The origins a worker's stream parses, in order: the stages' own permutation, failures left out."""

        def positions() -> Iterator[tuple[ShardRef, list[int]]]:
            for ref in shards:
                if ref.url not in self.shards:
                    raise _Unknown(ref.url)
                count = self.shards[ref.url][0]
                if count:  # read_shards yields no shard that gave no samples
                    yield ref, list(range(count))

        for ref, position in stages.shuffle_within_shards(positions(), seed, epoch, shuffle):
            if position not in self.shards[ref.url][1]:
                yield ref.url, position

    def batch(self, planned: PlannedBatch, epoch: int) -> LoaderBatch:
        """A planned batch built from held samples, as its worker would have delivered it (on the device)."""
        held = [self.entries[o] for o in planned.origins]
        sizes = [e.size for e in held]
        return LoaderBatch(
            keys=[e.key for e in held],
            boxes=[e.boxes for e in held],
            labels=[e.labels for e in held],
            sizes=sizes,
            packed=PackedBatch(merge_frames([e.packed for e in held]), sizes),
            epoch=epoch,
            index=planned.index,
            worker=planned.worker,
        )

    def stats(self) -> dict[str, Any]:
        """What is held: frames, bytes, bytes per frame, frames per GiB, the budget, and epochs replayed."""
        frames = len(self.entries)
        per_frame = self.bytes / frames if frames else 0.0
        return {
            "enabled": self.enabled,
            "device": str(self.device),
            "frames": frames,
            "bytes": self.bytes,
            "bytes_per_frame": per_frame,
            "frames_per_gib": 2**30 / per_frame if per_frame else 0.0,
            "budget_bytes": self.budget,
            "shards_recorded": len(self.shards),
            "replayed_epochs": self.replayed_epochs,
        }
