"""RINRDataset: an IterableDataset over shards that yields packed CPU batches, ready for a device decode.

Per epoch: shard list -> seeded shard shuffle -> node split -> worker split -> tar -> samples -> seeded
permutation inside each shard -> parse (records unpacked and dequantised, classic images decoded) -> batches
-> `LoaderBatch`. Workers never touch CUDA: the batched INR forward runs in the main process (see loader.py).
The position is (epoch, batches yielded), so a resumed worker replays its deterministic stream to that point.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from . import record as record_format
from .classic import decode_classic
from .decoder import PackedBatch, pack_records
from .errors import FormatError
from .grid_record import GridRecord, SceneTable
from .shards import image_member, sample_json, scene_members, tar_samples
from .shardlist import ShardRef, epoch_order, equal_quotas, resolve_shards, split
from .streaming import FetchPolicy, open_shard

ON_ERROR = ("raise", "warn", "skip")
SCENES_KEY = "__scenes__"  # where a raw sample carries its shard's SceneTable


@dataclass
class ParsedSample:
    """One sample after the worker's CPU work: a parsed record or a decoded classic image, plus its targets."""

    key: str
    codec: str
    record: record_format.Record | None
    image: torch.Tensor | None  # uint8 [3, H, W] for classic codecs
    boxes: torch.Tensor  # float32 [N, 4] xyxy pixels
    labels: torch.Tensor  # int64 [N]
    size: tuple[int, int]  # (H, W)
    scene: GridRecord | None = None  # the scene record a scene-mode record builds on


@dataclass
class LoaderBatch:
    """A batch as it leaves a worker: packed INRs (or uint8 images) and targets, all on the CPU."""

    keys: list[str]
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    sizes: list[tuple[int, int]]
    packed: PackedBatch | None
    images: list[torch.Tensor] | None
    epoch: int
    index: int  # batch number within this worker's epoch: seeds device-side augmentation
    worker: int

    def pin_memory(self) -> "LoaderBatch":
        """Page-locked copy, so the host-to-GPU copy in the main process can overlap compute."""
        return LoaderBatch(self.keys, self.boxes, self.labels, self.sizes,
                           self.packed.pin_memory() if self.packed is not None else None,
                           [i.pin_memory() for i in self.images] if self.images is not None else None,
                           self.epoch, self.index, self.worker)

    def __len__(self) -> int:
        return len(self.keys)


def _read_shard(ref: ShardRef, policy: FetchPolicy) -> Iterator[dict[str, Any]]:
    """Raw webdataset samples ({"__key__", ext: bytes}) of one shard."""
    try:
        with open_shard(ref.url, policy) as stream:
            yield from tar_samples(stream, ref.url)
    except FormatError:
        raise
    except Exception as exc:  # fetching or opening (OSError, HTTP errors): name the shard
        raise FormatError(f"{ref.url}: cannot read shard: {exc}") from exc


def parse_sample(sample: dict[str, Any]) -> ParsedSample:
    """Check a raw sample's JSON against its image member and parse the member (raises FormatError)."""
    key = sample["__key__"]
    meta = sample_json(sample)
    codec, data = image_member(sample)
    boxes = torch.tensor(meta["boxes"], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor(meta["labels"], dtype=torch.int64).reshape(-1)
    size = (int(meta["height"]), int(meta["width"]))
    if codec == "rinr":
        rec = record_format.unpack(data)
        scene = None
        if isinstance(rec, GridRecord) and rec.scene is not None:
            table = sample.get(SCENES_KEY) or SceneTable({})
            scene = table.get(rec.scene)
        if (rec.height, rec.width) != size:
            raise FormatError(f"record is {rec.width}x{rec.height} but its json says {size[1]}x{size[0]}")
        if len(rec.boxes) != len(boxes):
            raise FormatError(f"record has {len(rec.boxes)} boxes but its json {len(boxes)}")
        return ParsedSample(key, codec, rec, None, boxes, labels, size, scene)
    image = decode_classic(data)
    if tuple(image.shape[1:]) != size:
        raise FormatError(f"image is {image.shape[2]}x{image.shape[1]} but its json says {size[1]}x{size[0]}")
    return ParsedSample(key, codec, None, image, boxes, labels, size)


def collate(samples: Sequence[ParsedSample], epoch: int, index: int, worker: int) -> LoaderBatch:
    """Stack parsed samples: INRs packed by shape for one batched decode, classic images as a list."""
    codecs = {s.codec for s in samples}
    if len(codecs) > 1:
        raise FormatError(f"a batch mixes codecs {sorted(codecs)}: keep one codec per dataset")
    rinr = codecs == {"rinr"}
    return LoaderBatch(
        keys=[s.key for s in samples], boxes=[s.boxes for s in samples], labels=[s.labels for s in samples],
        sizes=[s.size for s in samples],
        packed=pack_records([s.record for s in samples],  # type: ignore[misc]
                            {s.record.scene: s.scene for s in samples if s.scene is not None}) if rinr else None,
        images=None if rinr else [s.image for s in samples],  # type: ignore[misc]
        epoch=epoch, index=index, worker=worker)


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class RINRDataset(IterableDataset):
    """Shards (of rinr records, or of JPEG/WebP/AVIF for baselines) as an iterable of packed CPU batches.

    Args:
        urls_or_manifest: a dataset folder or manifest.json path/URL, a brace pattern, or a list of shard URLs.
        batch_size: samples per batch.
        shuffle: shuffle shard order per epoch and samples within each shard (seeded: reproducible).
        seed: base seed of every shuffle and of the augmentation downstream.
        on_error: "raise" (stop, naming shard and sample), "warn" (drop the sample with a warning) or "skip".
        device: where the main process decodes ("auto": CUDA if available); workers stay on the CPU.
        drop_last: drop each worker's last partial batch.
        rank, world_size: node split; default from torch.distributed or RANK/WORLD_SIZE.
        equal_batches: every rank yields the same number of batches (default: on when world_size > 1).
        cache_dir: on-disk cache for remote shards; each shard is downloaded once.
        retries: download attempts after the first, with exponential backoff.
    """

    def __init__(self, urls_or_manifest: Any, batch_size: int = 8, shuffle: bool = True, seed: int = 0,
                 on_error: str = "raise", device: str | torch.device = "auto", drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None, equal_batches: bool | None = None,
                 cache_dir: str | None = None, retries: int = 6) -> None:
        super().__init__()
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.policy = FetchPolicy(cache_dir=cache_dir, retries=retries)
        self.shards, self.manifest = resolve_shards(urls_or_manifest, self.policy)
        if not self.shards:
            raise ValueError(f"{urls_or_manifest}: the dataset has no shards")
        self.batch_size, self.shuffle, self.seed, self.on_error = batch_size, shuffle, seed, on_error
        self.device, self.drop_last = device, drop_last
        default_rank, default_world = _distributed()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        self.equal_batches = self.world_size > 1 if equal_batches is None else equal_batches
        self.epoch = 0
        self._resume_batches = 0
        self._batches = 0
        self.errors = 0

    @property
    def classes(self) -> list[str] | None:
        """Class names from the manifest, if any."""
        return list(self.manifest["classes"]) if self.manifest else None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle the next iteration uses."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        """Position in the epoch (per worker under a StatefulDataLoader)."""
        return {"epoch": self.epoch, "batches": self._batches, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after the batches recorded in `state` on the next iteration."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"state was saved with seed {state['seed']}, this dataset has seed {self.seed}")
        self.epoch = int(state["epoch"])
        self._resume_batches = int(state["batches"])

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def worker_plan(self, worker: int, workers: int) -> tuple[list[ShardRef], int | None]:
        """This rank-worker's shards for the current epoch and its batch quota (None: no limit)."""
        order = epoch_order(self.shards, self.seed, self.epoch, self.shuffle)
        mine = split(split(order, self.rank, self.world_size), worker, workers)
        quota = None
        if self.equal_batches:
            quota = equal_quotas(order, self.world_size, workers, self.batch_size)[self.rank][worker]
        return mine, quota

    def batches_per_epoch(self, workers: int = 1) -> int | None:
        """Batches this rank yields per epoch (None without per-shard counts); exact unless samples fail."""
        if any(s.samples is None for s in self.shards):
            return None
        total = 0
        for w in range(max(workers, 1)):
            shards, quota = self.worker_plan(w, max(workers, 1))
            n = sum(s.samples for s in shards)  # type: ignore[misc]
            full = n // self.batch_size if self.drop_last or quota is not None else -(-n // self.batch_size)
            total += full if quota is None else min(full, quota)
        return total

    def _samples(self, shards: Sequence[ShardRef]) -> Iterator[ParsedSample]:
        for ref in shards:
            try:
                raw = list(_read_shard(ref, self.policy))
            except FormatError as exc:
                if self.on_error == "raise":
                    raise
                self._report(f"{exc} (shard skipped)")
                continue
            # Scene records ride along as members of some samples; every sample of the shard may use them.
            scenes = SceneTable(scene_members(raw), ref.url)
            for sample in raw:
                sample[SCENES_KEY] = scenes
            if self.shuffle:
                # Keyed by the shard's file name, not its URL: a mirror or cache gives the same order.
                random.Random(f"{self.seed}/{self.epoch}/{ref.url.rsplit('/', 1)[-1]}").shuffle(raw)
            for sample in raw:
                try:
                    yield self.parse(sample)
                except FormatError as exc:
                    error = FormatError(f"{ref.url}: sample {sample.get('__key__')!r}: {exc}")
                    # A `fatal` error is a configuration mistake (e.g. wrong codec), not a damaged sample:
                    # never skip it.
                    if self.on_error == "raise" or getattr(exc, "fatal", False):
                        raise error from None
                    self._report(str(error))

    def parse(self, sample: dict[str, Any]) -> ParsedSample:
        """Worker-side parsing of one raw sample; subclasses override it (e.g. to keep JPEG bytes for a GPU decode)."""
        return parse_sample(sample)

    def _report(self, message: str) -> None:
        self.errors += 1
        if self.on_error == "warn":
            warnings.warn(message, stacklevel=2)

    def __iter__(self) -> Iterator[LoaderBatch]:
        worker, workers = self._worker()
        shards, quota = self.worker_plan(worker, workers)
        skip, self._resume_batches = self._resume_batches, 0
        self._batches = 0
        pending: list[ParsedSample] = []
        for sample in self._samples(shards):
            pending.append(sample)
            if len(pending) < self.batch_size:
                continue
            if quota is not None and self._batches >= quota:
                return
            batch, pending = pending, []
            self._batches += 1
            if self._batches > skip:
                yield collate(batch, self.epoch, self._batches - 1, worker)
        if pending and not self.drop_last and quota is None:
            self._batches += 1
            if self._batches > skip:
                yield collate(pending, self.epoch, self._batches - 1, worker)
