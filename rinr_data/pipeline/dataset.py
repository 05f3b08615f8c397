"""RINRDataset: an IterableDataset over shards that yields packed CPU batches, ready for a device decode.

Per epoch: shard list -> seeded shard shuffle -> node split -> worker split, then the stages (stages.py): read
shards -> seeded permutation inside each shard -> parse (samples.parse_sample: each member parsed by its codec)
-> batches -> `LoaderBatch` (frames packed by codec and shape). Workers never touch CUDA: the batched INR forward
runs in the main process (see loader.py). The position is (epoch, batches yielded), so a resumed worker replays
its deterministic stream to that point. With `record_order` set (by a loader that caches samples on the device),
batches also say where each sample sits in its shard and what reading each shard showed, so the loader can replay
any epoch's order without the shards (cache.py).
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .. import codecs
from ..core.devices import rank_and_world
from ..decode import PackedBatch, pack_records
from ..errors import FormatError
from . import stages
from .samples import ParsedSample, parse_sample, read_shard, scenes_of
from .shardlist import ShardRef, epoch_order, equal_quotas, resolve_shards, split
from .streaming import FetchPolicy

ORIGIN_KEY = "__origin__"  # where a raw sample carries (shard url, position in the tar) while the order is recorded


@dataclass(frozen=True)
class ShardLog:
    """What reading a shard showed: how many samples it gave (tar order) and the positions that failed to parse."""

    url: str
    samples: int
    failed: tuple[int, ...] = ()


@dataclass
class LoaderBatch:
    """A batch as it leaves a worker: its frames packed for a batched decode, and targets, all on the CPU."""

    keys: list[str]
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    sizes: list[tuple[int, int]]
    packed: PackedBatch
    epoch: int
    index: int  # batch number within this worker's epoch: seeds device-side augmentation
    worker: int
    # With record_order: each sample's (shard url, position in the tar), and the shards read (or found damaged)
    # since the previous batch. A worker ends its stream with a batch of no samples carrying the last logs.
    origins: list[tuple[str, int]] | None = None
    shards: list[ShardLog] | None = None

    def pin_memory(self) -> "LoaderBatch":
        """Page-locked copy, so the host-to-GPU copy in the main process can overlap compute."""
        return LoaderBatch(
            self.keys,
            self.boxes,
            self.labels,
            self.sizes,
            self.packed.pin_memory(),
            self.epoch,
            self.index,
            self.worker,
            self.origins,
            self.shards,
        )

    def __len__(self) -> int:
        return len(self.keys)


def collate(samples: Sequence[ParsedSample], epoch: int, index: int, worker: int) -> LoaderBatch:
    """Stack parsed samples: every frame packed by codec and shape for one batched decode."""
    members = {codecs.get(s.codec).member for s in samples}
    if len(members) > 1:
        raise FormatError(f"a batch mixes codecs {sorted(members)}: keep one codec per dataset")
    return LoaderBatch(
        keys=[s.key for s in samples],
        boxes=[s.boxes for s in samples],
        labels=[s.labels for s in samples],
        sizes=[s.size for s in samples],
        packed=pack_records([s.payload for s in samples], scenes_of(samples)),
        epoch=epoch,
        index=index,
        worker=worker,
    )


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
        fixed_shares: each rank keeps the same shards every epoch (the shuffle permutes them within the rank's share)
            instead of taking its share of a dataset-wide shuffle; a loader with a device cache turns it on, so each
            rank holds 1/world_size of the dataset.
    """

    def __init__(
        self,
        urls_or_manifest: Any,
        batch_size: int = 8,
        shuffle: bool = True,
        seed: int = 0,
        on_error: str = "raise",
        device: str | torch.device = "auto",
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        equal_batches: bool | None = None,
        cache_dir: str | None = None,
        retries: int = 6,
        fixed_shares: bool = False,
    ) -> None:
        super().__init__()
        self._errors = stages.ErrorPolicy(on_error)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.policy = FetchPolicy(cache_dir=cache_dir, retries=retries)
        self.shards, self.manifest = resolve_shards(urls_or_manifest, self.policy)
        if not self.shards:
            raise ValueError(f"{urls_or_manifest}: the dataset has no shards")
        self.batch_size, self.shuffle, self.seed, self.on_error = batch_size, shuffle, seed, on_error
        self.device, self.drop_last = device, drop_last
        default_rank, default_world = rank_and_world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world size {self.world_size}")
        self.equal_batches = self.world_size > 1 if equal_batches is None else equal_batches
        self.epoch = 0
        self._resume_batches = 0
        self._batches = 0
        self.record_order = False  # set by a caching loader: batches then carry origins and shard logs
        self.fixed_shares = fixed_shares

    @property
    def errors(self) -> int:
        """Shards and samples dropped so far under on_error "warn" or "skip"."""
        return self._errors.dropped

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

    def rank_shards(self, rank: int) -> list[ShardRef]:
        """A rank's shards for the current epoch, in the order its workers split them."""
        if self.fixed_shares:
            return epoch_order(split(self.shards, rank, self.world_size), self.seed, self.epoch, self.shuffle)
        return split(epoch_order(self.shards, self.seed, self.epoch, self.shuffle), rank, self.world_size)

    def worker_plan(self, worker: int, workers: int) -> tuple[list[ShardRef], int | None]:
        """This rank-worker's shards for the current epoch and its batch quota (None: no limit)."""
        mine = split(self.rank_shards(self.rank), worker, workers)
        quota = None
        if self.equal_batches:
            shares = [self.rank_shards(r) for r in range(self.world_size)]
            quota = equal_quotas(shares, workers, self.batch_size)[self.rank][worker]
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

    def parse(self, sample: dict[str, Any]) -> ParsedSample:
        """Worker-side parsing of one raw sample; subclasses override it (e.g. to keep JPEG bytes for a GPU decode)."""
        return parse_sample(sample, classes=self.classes)

    def __iter__(self) -> Iterator[LoaderBatch]:
        worker, workers = self._worker()
        shards, quota = self.worker_plan(worker, workers)
        skip, self._resume_batches = self._resume_batches, 0
        self._batches = 0
        read: Callable[[ShardRef], Any] = functools.partial(read_shard, policy=self.policy)
        parse: Callable[[dict[str, Any]], ParsedSample] = self.parse
        log = _OrderLog() if self.record_order else None
        if log is not None:
            read, parse = log.reader(read), log.parser(parse)
        raw = stages.read_shards(shards, read, self._errors)
        samples = stages.shuffle_within_shards(raw, self.seed, self.epoch, self.shuffle)
        parsed = stages.parse_samples(samples, parse, self._errors)
        for index, batch in enumerate(stages.batched(parsed, self.batch_size, not self.drop_last, quota)):
            self._batches = index + 1  # batches produced so far, skipped ones included: the resume position
            origins = log.origins(len(batch)) if log is not None else None
            if index >= skip:
                out = collate(batch, self.epoch, index, worker)
                if log is not None:
                    out.origins, out.shards = origins, log.take()
                yield out
        if log is not None and log.changed:
            # Shards read and failures met after the last batch (a quota or drop_last cut the stream short).
            yield LoaderBatch([], [], [], [], PackedBatch([], []), self.epoch, -1, worker, [], log.take())


class _OrderLog:
    """One worker iteration's record of each shard's sample count and parse failures, and of the origin of every
    parsed sample in stream order: what a device cache needs to replay the sample order without the shards."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.failed: dict[str, list[int]] = {}
        self.changed: dict[str, None] = {}  # shards with news since the last take(), in order
        self.parsed: deque[tuple[str, int]] = deque()

    def reader(self, read: Callable[[ShardRef], Any]) -> Callable[[ShardRef], Any]:
        """`read` that tags every raw sample with its origin and logs the shard's sample count."""

        def tagged(ref: ShardRef) -> Any:
            raw, error = read(ref)
            for position, sample in enumerate(raw):
                sample[ORIGIN_KEY] = (ref.url, position)
            self.counts[ref.url] = len(raw)
            self.failed.setdefault(ref.url, [])
            self.changed[ref.url] = None
            return raw, error

        return tagged

    def parser(self, parse: Callable[[dict[str, Any]], ParsedSample]) -> Callable[[dict[str, Any]], ParsedSample]:
        """`parse` that logs each sample's origin, or its failure."""

        def logged(sample: dict[str, Any]) -> ParsedSample:
            url, position = sample[ORIGIN_KEY]
            try:
                parsed = parse(sample)
            except FormatError:
                self.failed[url].append(position)
                self.changed[url] = None
                raise
            self.parsed.append((url, position))
            return parsed

        return logged

    def origins(self, count: int) -> list[tuple[str, int]]:
        """The origins of the next `count` parsed samples (a batch takes them in the order they were parsed)."""
        return [self.parsed.popleft() for _ in range(count)]

    def take(self) -> list[ShardLog]:
        """Logs of the shards with news since the last call."""
        out = [ShardLog(url, self.counts[url], tuple(self.failed[url])) for url in self.changed]
        self.changed.clear()
        return out
