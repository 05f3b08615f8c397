"""Dataset -> shards: load, encode and write stages, resumable per shard and split across torchrun ranks.

Samples keep the source's order and shard i holds samples [i * shard_size, (i + 1) * shard_size) that did not
fail, so a shard's content never depends on how the run was interrupted or how many ranks shared the work.
A shard appears under its final name only when complete (see shards.write_shard); a re-run keeps those that still
match what was written (shards.complete_shard_problem) and redoes the others.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tarfile
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TextIO

from . import codecs, shards
from ._version import __version__
from .codecs import GridConfig
from .core.devices import rank_and_world, resolve_device
from .errors import ResumeError
from .format import FORMAT_VERSION
from .sources import LoadedSample, SampleError, Source, SourceItem, load_sample

CODECS = codecs.MEMBERS
SCENE_MODES = ("auto", "off")
ON_ERROR = ("stop", "skip")
STATE_FILE = "state.json"
WARM_FILE = "warm-start.npz"  # in the work folder: a resumed run or another rank starts frames from the same one
STATE_VERSION = 1
# Ranks that finish early wait at the final barrier for the slowest one; encoding can take many hours.
DIST_TIMEOUT = timedelta(hours=72)

# Automatic encode jobs on a CPU stop here: each holds a batch of frames and its fitting state in memory, and
# the gain was measured on 2 cores only (docs/BENCHMARKS.md, "Encoding jobs").
MAX_AUTO_JOBS = 4
Log = Callable[[str], None]
# Called with (item, error) for every sample that fails; raises to stop, returns to skip.
ErrorHandler = Callable[[SourceItem, SampleError], None]
Encoder = Callable[[Sequence[LoadedSample]], list[shards.ShardSample]]


@dataclass(frozen=True)
class ConvertConfig:
    """How a dataset becomes shards.

    Args:
        codec: "rinr" (residual INR records) or a classic codec: "jpeg", "webp", "avif".
        codec_config: encoder settings for "rinr" (GridConfig or PaperConfig: which INR codec).
        quality: classic codec quality (default per codec in codecs.classic.DEFAULT_QUALITY).
        size: resize every image to exactly (width, height); boxes are scaled alike.
        max_side: downscale images whose longer side exceeds this (aspect kept); ignored with `size`.
        shard_size: samples per shard (before failures are dropped).
        batch: frames per encode_frames call (INRs of one shape are fitted together); batches stay in a shard.
        prefix: shard file prefix: `{prefix}-{index:06d}.tar`.
        scene: "off", or "auto": scene mode (grid preset): the frames of each encode batch share scene backgrounds
            (`encode_sequence`), stored in the same shard; keep `batch` large and the source in camera order.
        workers: threads that read images and run classic codecs.
        jobs: encode batches fitted at once by this process, each on its share of the torch threads; 0 (default):
            on a CPU one per thread up to MAX_AUTO_JOBS (fitting calls are too small to keep several cores busy, so
            concurrent calls on one thread each do more frames per second), 1 on a GPU. Records are identical for a
            given number of torch threads per job, not across different ones (float sums split differently).
        on_error: "stop" at the first bad sample, or "skip" it (counted and listed in the manifest).
    """

    codec: str = "rinr"
    codec_config: Any = field(default_factory=GridConfig)
    quality: int | None = None
    size: tuple[int, int] | None = None
    max_side: int | None = None
    shard_size: int = 1000
    batch: int = 4  # one frame per fitting call costs ~1.6x more per frame on a CPU (docs/BENCHMARKS.md)
    prefix: str = "shard"
    scene: str = "off"
    workers: int = 2
    jobs: int = 0
    on_error: str = "stop"

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; valid codecs: {', '.join(CODECS)}")
        codec, config = self.encoder()
        if self.quality is not None and codec.member == codecs.RECORD_MEMBER:
            raise ValueError("quality applies to the classic codecs (jpeg, webp, avif), not rinr")
        for name in ("shard_size", "batch", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.jobs < 0:
            raise ValueError(f"jobs must be >= 0 (0: automatic), got {self.jobs}")
        if self.max_side is not None and self.max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {self.max_side}")
        if self.scene not in SCENE_MODES:
            raise ValueError(f"unknown scene mode {self.scene!r}; valid: {', '.join(SCENE_MODES)}")
        if self.scene == "auto" and not getattr(codec, "supports_scenes", False):
            raise ValueError(
                f"scene mode needs codec rinr with the grid preset, not {self.codec} "
                f"{codec.name if codec.member == codecs.RECORD_MEMBER else ''}".rstrip()
            )
        if self.on_error not in ON_ERROR:
            raise ValueError(f"unknown on_error {self.on_error!r}; valid: {', '.join(ON_ERROR)}")
        shards.check_prefix(self.prefix)

    def fitting_jobs(self, threads: int) -> int:
        """Encode batches in flight for a process with `threads` torch threads (`jobs`, or what 0 resolves to)."""
        if self.jobs:
            return self.jobs
        codec, config = self.encoder()
        if codec.member != codecs.RECORD_MEMBER or resolve_device(config.device).type != "cpu":
            return 1
        return max(1, min(threads, MAX_AUTO_JOBS))

    def encoder(self) -> tuple[Any, Any]:
        """The codec that writes the image members and the config it encodes with."""
        return codecs.for_output(self.codec, self.codec_config, self.quality)

    @property
    def effective_quality(self) -> int | None:
        """The classic codec quality in use (None for rinr)."""
        return self.codec_settings().get("quality")

    def codec_settings(self) -> dict[str, Any]:
        """What decides the image member bytes (the codec's settings; never where it ran)."""
        codec, config = self.encoder()
        return codec.settings(config) if hasattr(codec, "settings") else config.settings()

    def settings(self) -> dict[str, Any]:
        """Settings that decide the shards' content; a resumed run must match them (device, workers and
        on_error may change between runs)."""
        return {
            "codec": self.codec,
            "codec_config": self.codec_settings(),
            "size": list(self.size) if self.size else None,
            "max_side": self.max_side,
            "shard_size": self.shard_size,
            "batch": self.batch,
            "prefix": self.prefix,
            "scene": self.scene,
        }


@dataclass
class ConvertResult:
    """What a run did: shards it wrote, shards it found complete, (rank 0) the manifest and skipped samples, and
    what this run (this rank) encoded: frames handled (stored or failed), seconds, samples and bytes it wrote."""

    written: list[str]
    already_complete: list[str]
    manifest: Path | None
    samples: int
    skipped: list[dict[str, str]]
    frames: int = 0
    seconds: float = 0.0
    written_samples: int = 0
    written_bytes: int = 0

    def run_line(self) -> str:
        """One line on what this run encoded: frames, seconds, frames/s and shard bytes per stored frame."""
        if not self.frames:
            return "encoded 0 frames: every shard was already complete"
        rate = self.frames / self.seconds if self.seconds > 0 else math.inf
        per_frame = (
            f", {self.written_bytes / self.written_samples:,.0f} bytes/frame in shards" if self.written_samples else ""
        )
        return f"encoded {self.frames} frame(s) in {self.seconds:.1f} s: {rate:.2f} frames/s{per_frame}"


# ---------------------------------------------------------------------------------------------- stages


def stop_on_error(item: SourceItem, error: SampleError) -> None:
    """Error policy "stop": re-raise."""
    raise error


def load_stage(
    items: Iterable[SourceItem],
    load: Callable[[SourceItem], LoadedSample],
    pool: Executor,
    handler: ErrorHandler,
    log: Log,
    ahead: int = 4,
) -> Iterator[LoadedSample]:
    """Load samples in order on a thread pool, `ahead` in flight; log their warnings, hand failures to handler."""
    it = iter(items)
    pending = deque((item, pool.submit(load, item)) for item in islice(it, ahead))
    while pending:
        item, future = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, pool.submit(load, nxt)))
        try:
            sample = future.result()
        except SampleError as exc:
            handler(item, exc)
            continue
        for note in sample.warnings:
            log(f"warning: {note}")
        yield sample


def _batched(samples: Iterable[LoadedSample], n: int) -> Iterator[list[LoadedSample]]:
    it = iter(samples)
    while chunk := list(islice(it, n)):
        yield chunk


def encode_stage(
    samples: Iterable[LoadedSample],
    encode: Encoder,
    batch: int,
    handler: ErrorHandler,
    jobs: Executor | None = None,
    in_flight: int = 1,
) -> Iterator[shards.ShardSample]:
    """Encode samples `batch` at a time; if a batch fails, encode its samples alone to find the bad one(s). With
    `jobs`, `in_flight` batches are encoded at once on that executor; samples still come out in order."""

    def encode_batch(chunk: list[LoadedSample]) -> list[shards.ShardSample]:
        try:
            return encode(chunk)
        except Exception:  # noqa: BLE001 - any encoder failure is a per-sample failure to isolate below
            out = []
            for sample in chunk:
                out += _encode_one(sample, encode, handler)
            return out

    if jobs is None or in_flight <= 1:
        for chunk in _batched(samples, batch):
            yield from encode_batch(chunk)
        return
    pending: deque[Future] = deque()
    try:
        for chunk in _batched(samples, batch):
            pending.append(jobs.submit(encode_batch, chunk))
            if len(pending) >= in_flight:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for future in pending:  # stopped early (an error, or the consumer closed us): start nothing new
            future.cancel()


def _encode_one(sample: LoadedSample, encode: Encoder, handler: ErrorHandler) -> list[shards.ShardSample]:
    try:
        return encode([sample])
    except Exception as exc:  # noqa: BLE001
        handler(sample.item, SampleError(f"{sample.item.source}: encoding failed: {type(exc).__name__}: {exc}"))
        return []


def sample_encoder(codec: Any, config: Any, pool: Executor, scene: bool = False) -> Encoder:
    """Encoding of a batch of samples by `codec`: frames fitted together, independent frames on the pool, or
    (scene mode) one sequence whose frames' JSON name their scene (the first frame of a scene carries its record)."""

    def encode(batch: Sequence[LoadedSample]) -> list[shards.ShardSample]:
        images, boxes = [s.image for s in batch], [s.boxes for s in batch]
        scenes: dict[str, bytes] = {}
        if scene:
            scenes, frames = codec.encode_sequence(images, boxes, config)
        elif getattr(codec, "parallel_frames", False):
            frames = list(pool.map(lambda s: codec.encode([s.image], [s.boxes], config)[0], batch))
        else:
            frames = codec.encode(images, boxes, config)
        out = []
        for s, f in zip(batch, frames):
            meta = shards.sample_meta(
                s.width, s.height, f.boxes, s.labels, s.item.source, f.object_psnr, f.background_psnr
            )
            carried = {}
            if scene:
                meta["scene"] = f.scene
                if meta["scene"] in scenes:
                    carried = {meta["scene"]: scenes.pop(meta["scene"])}
            out.append(shards.ShardSample(s.item.key, codec.member, f.blob, meta, carried))
        return out

    return encode


# ---------------------------------------------------------------------------------------------- distributed


def init_distributed() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; joins a gloo process group when WORLD_SIZE > 1."""
    rank, world = rank_and_world()
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=DIST_TIMEOUT)
    return rank, world


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _broadcast(value: Any) -> Any:
    dist = _dist()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()


# ---------------------------------------------------------------------------------------------- resume state


def _state(source: Source, config: ConvertConfig) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "source": str(Path(source.root).resolve()),
        "format": source.format,
        "samples": len(source.items),
        "fingerprint": source.fingerprint(),
        "classes": source.classes,
        "settings": config.settings(),
    }


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_state(out: Path, source: Source, config: ConvertConfig) -> str | None:
    """Create the resume state, or compare it with a stored one; an error message when they differ."""
    path = shards.work_dir(out) / STATE_FILE
    want = _state(source, config)
    if not path.is_file():
        stray = sorted(p.name for p in out.glob(f"{config.prefix}-*.tar")) if out.is_dir() else []
        if stray:
            return (
                f"{out} already holds shards ({', '.join(stray[:3])}{', ...' if len(stray) > 3 else ''}) but no "
                f"resume state ({shards.WORK_DIR}/{STATE_FILE}); choose an empty output folder"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        shards.write_json_atomic(path, want)
        return None
    try:
        have = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"{path}: unreadable resume state ({exc}); delete {out} to start over"
    if have == want:
        return None
    a, b = _flatten(have), _flatten(want)
    diffs = [
        f"{k} is {_short(b.get(k))} now, was {_short(a.get(k))}"
        for k in sorted(set(a) | set(b))
        if k != "fingerprint" and a.get(k) != b.get(k)
    ]
    if a.get("fingerprint") != b.get("fingerprint"):
        diffs.append("the source's images list or annotations changed")
    return (
        f"{out} was started with different arguments or data: "
        + "; ".join(diffs)
        + f". Re-run with the original arguments to resume, or use a new output folder (or delete {out})."
    )


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------- the run


def plan_shards(n_samples: int, shard_size: int) -> list[range]:
    """Sample index ranges of every shard."""
    return [range(i, min(i + shard_size, n_samples)) for i in range(0, n_samples, shard_size)]


def _stderr(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def torch_threads() -> int:
    """The torch intra-op threads this process fits with."""
    import torch

    return torch.get_num_threads()


@contextmanager
def split_threads(jobs: int) -> Iterator[None]:
    """Give each of `jobs` concurrent fitting calls an equal share of the torch threads, for the duration."""
    import torch

    threads = torch.get_num_threads()
    if jobs > 1:
        torch.set_num_threads(max(1, threads // jobs))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def frame_bar(
    total: int,
    done: int,
    *,
    desc: str = "encoding",
    position: int | None = None,
    enabled: bool = True,
    file: TextIO | None = None,
) -> Any:
    """tqdm bar over a run's frames from the `done` ones of complete shards; frames/s and ETA count this run's only."""
    # tqdm leaves `initial` out of its rate, so a resumed run's kept frames do not inflate it (tests/test_estimate.py).
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=done,
        unit="frame",
        desc=desc,
        position=position,
        disable=not enabled,
        dynamic_ncols=True,
        smoothing=0.1,
        file=file,
    )


def encode_dataset(
    source: Source,
    out: str | Path,
    config: ConvertConfig,
    *,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
    log: Log = _stderr,
    on_sample: Callable[[int, str], None] | None = None,
) -> ConvertResult:
    """Convert a scanned dataset into shards under `out`, resuming after complete shards.

    Under torchrun call init_distributed() first and pass its (rank, world): rank r encodes shards
    i % world == r, and rank 0 writes the manifest once all ranks are done. `on_sample(shard, key)` is
    called after each sample is written (progress hooks, tests).
    """
    out = Path(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        error = check_state(out, source, config)
    else:
        error = None
    error = _broadcast(error)
    if error:
        raise ResumeError(error)
    plan = plan_shards(len(source.items), config.shard_size)
    mine = [i for i in range(len(plan)) if i % world == rank]
    names = [shards.shard_name(config.prefix, i) for i in range(len(plan))]
    done = [i for i in mine if (out / names[i]).is_file() and _keep_complete(out, names[i], len(plan[i]), log)]
    todo = [i for i in mine if i not in done]
    if done and rank == 0 and todo:
        log(f"resuming: {len(done)} complete shard(s) kept, {len(todo)} to encode")

    config = warm_up(source, out, config, rank=rank, progress=progress, log=log)
    bar = frame_bar(
        sum(len(plan[i]) for i in mine),
        sum(len(plan[i]) for i in done),
        desc=f"rank {rank}" if world > 1 else "encoding",
        position=rank if world > 1 else None,
        enabled=progress,
    )
    written: list[str] = []
    made: list[shards.ShardInfo] = []
    frames = 0
    counting = threading.Lock()  # a failed sample is counted from the job thread that met it
    threads = torch_threads()
    # Batches never span shards: more jobs than the run has batches would only take threads from the ones it has.
    batches = sum(-(-len(plan[i]) // config.batch) for i in todo)
    in_flight = max(1, min(config.fitting_jobs(threads), batches))
    if in_flight > 1 and todo:
        log(f"fitting {in_flight} batches at once, {max(1, threads // in_flight)} torch thread(s) each")
    start = time.perf_counter()
    try:
        with (
            ThreadPoolExecutor(config.workers) as pool,
            ThreadPoolExecutor(in_flight) as jobs,
            split_threads(in_flight),
        ):
            encoder = sample_encoder(*config.encoder(), pool, config.scene == "auto")
            for i in todo:

                def advance(key: str | None, shard: int = i) -> None:
                    nonlocal frames
                    with counting:
                        frames += 1
                        bar.update(1)
                    if key is not None and on_sample is not None:
                        on_sample(shard, key)

                shard_items = [source.items[j] for j in plan[i]]
                made.append(
                    encode_shard(out, names[i], shard_items, encoder, pool, config, log, advance, jobs, in_flight)
                )
                written.append(names[i])
    finally:
        bar.close()
    result = ConvertResult(
        written,
        [names[i] for i in done],
        None,
        0,
        [],
        frames=frames,
        seconds=time.perf_counter() - start,
        written_samples=sum(info.samples for info in made),
        written_bytes=sum(info.bytes for info in made),
    )
    log((f"rank {rank}: " if world > 1 else "") + result.run_line())

    _barrier()
    if rank != 0:
        return result
    infos = []
    for name in names:
        if not (out / name).is_file():
            raise ResumeError(f"{out / name} is missing after all ranks finished; re-run to encode it")
        infos.append(shards.read_shard_info(out, name))
    manifest = build_manifest(source, config, infos)
    path = shards.write_manifest(out, manifest)
    return dataclasses.replace(result, manifest=path, samples=manifest["samples"], skipped=manifest["skipped"])


def warm_up(
    source: Source, out: Path, config: ConvertConfig, *, rank: int = 0, progress: bool = True, log: Log = _stderr
) -> ConvertConfig:
    """`config` with its codec's warm start for this dataset: rank 0 learns it on a spread sample of frames (or reads
    the one a previous run with the same settings saved), the other ranks read it; unchanged for codecs without."""
    codec, codec_config = config.encoder()
    frames = getattr(codec_config, "warm_frames", 0)
    if not hasattr(codec, "learn_warm_start") or not frames or config.scene != "off" or not source.items:
        return config
    path = shards.work_dir(out) / WARM_FILE
    meta = {"settings": config.settings(), "fingerprint": source.fingerprint()}
    if rank == 0:
        warm = codec.read_warm_start(path, codec_config, meta) if path.is_file() else None
        if warm is None:
            picked = sample_indices(len(source.items), frames)
            samples = []
            for i in picked:
                try:
                    samples.append(load_sample(source.items[i], config.size, config.max_side))
                except SampleError as exc:
                    # The sample is reported (or stops the run) when its shard encodes it; the warm start does
                    # without it.
                    log(f"warning: warm start leaves out {source.items[i].source}: {exc}")
            if not samples:
                log("warning: no frame of the warm-start sample loaded; every frame fits from scratch")
                _broadcast(False)
                return config
            log(f"learning the warm start on {len(samples)} frame(s) ({codec_config.max_steps} steps)")
            images, boxes = [s.image for s in samples], [s.boxes for s in samples]
            warm = codec.learn_warm_start(images, boxes, codec_config, progress)
            shards.work_dir(out).mkdir(parents=True, exist_ok=True)
            codec.write_warm_start(path, warm, meta)
        _broadcast(True)
    else:
        if not _broadcast(None):
            return config
        warm = codec.read_warm_start(path, codec_config, meta)
        if warm is None:
            raise ResumeError(f"{path}: rank 0's warm start is missing or was learned with other settings")
    return dataclasses.replace(config, codec_config=codec_config.replace(warm=warm))


def _keep_complete(out: Path, name: str, planned: int, log: Log) -> bool:
    """Whether a shard found under its final name is the one written there; a damaged one is removed to be redone."""
    # The final name means "complete" only until someone cuts or edits the file; keeping a damaged shard would put
    # it in the manifest (or stop the run with a traceback when the manifest is built).
    problem = shards.complete_shard_problem(out, name, planned)
    if problem is None:
        return True
    log(f"redoing {name}: {problem}")
    (out / name).unlink()
    return False


def encode_shard(
    out: Path,
    name: str,
    items: Sequence[SourceItem],
    encoder: Encoder,
    pool: Executor,
    config: ConvertConfig,
    log: Log,
    advance: Callable[[str | None], None],
    jobs: Executor | None = None,
    in_flight: int = 1,
) -> shards.ShardInfo:
    """Load, encode and write one shard's samples, `in_flight` batches at once on `jobs`; `advance(key)` after each
    stored sample, (None) per failure."""
    skipped: list[dict[str, str]] = []

    def handler(item: SourceItem, exc: SampleError) -> None:
        advance(None)
        if config.on_error == "stop":
            raise exc
        log(f"skipped: {exc}")
        skipped.append({"key": item.key, "source": item.source, "error": str(exc)})

    def load(item: SourceItem) -> LoadedSample:
        return load_sample(item, config.size, config.max_side)

    def stored(samples: Iterable[shards.ShardSample]) -> Iterator[shards.ShardSample]:
        for sample in samples:
            yield sample
            # Resumes once the writer has taken the sample: it is in the (partial) shard now.
            advance(sample.key)

    loaded = load_stage(items, load, pool, handler, log, ahead=max(2 * config.workers, in_flight * config.batch))
    encoded = encode_stage(loaded, encoder, config.batch, handler, jobs, in_flight)
    return shards.write_shard(out, name, stored(encoded), skipped)


def build_manifest(source: Source, config: ConvertConfig, infos: Sequence[shards.ShardInfo]) -> dict[str, Any]:
    """manifest.json's content for complete shards (layout in docs/SHARDS.md)."""
    return {
        "format": "rinr-shards",
        "version": shards.LAYOUT_VERSION,
        "created_by": "rinr-data " + _version(),
        "codec": config.codec,
        "record_format_version": FORMAT_VERSION if config.codec == codecs.RECORD_MEMBER else None,
        "codec_config": config.codec_settings(),
        "classes": list(source.classes),
        "source": {"path": str(Path(source.root).resolve()), "format": source.format, "samples": len(source.items)},
        "resize": {"size": list(config.size) if config.size else None, "max_side": config.max_side},
        "shard_size": config.shard_size,
        "samples": sum(info.samples for info in infos),
        "skipped": [s for info in infos for s in info.skipped],
        # Scene mode: scene records travel inside the shards (docs/SHARDS.md); null otherwise.
        "scenes": "in-shard" if config.scene == "auto" else None,
        "shards": [info.manifest_entry() for info in infos],
    }


def _version() -> str:
    return __version__


# ---------------------------------------------------------------------------------------------- estimate


@dataclass(frozen=True)
class Estimate:
    """What encoding a whole dataset will cost on this machine, projected from an encoded sample of it.

    Time: `startup_seconds` once (first batch beyond the steady state: device start-up, first loads, learning the
    warm start on a sample of the sample, which costs what a full run's costs), then
    `seconds_per_batch` per encode batch of `batch` frames; batches never span shards, so a full run has `batches`
    of them. Bytes: the sample's shard bytes per frame (tar headers of its members included) times the frames of
    each planned shard, plus each shard's tar end blocks and padding; `bytes_per_frame` is that total per frame.
    """

    frames: int  # of the whole dataset
    sample: list[int]  # source indices encoded
    sample_batches: int  # encode batches of the sample
    failed: int  # sample frames that failed (on_error "skip")
    batch: int
    batches: int  # encode batches of a full run
    shards: int  # of a full run
    sample_seconds: float  # wall clock of the whole sample encode
    startup_seconds: float
    seconds_per_batch: float
    seconds_per_frame: float
    bytes_per_frame: float
    projected_seconds: float
    projected_bytes: int
    object_psnr: float | None  # mean over the sample; lossless frames (999 dB) left out
    background_psnr: float | None
    codec: str
    settings: dict[str, Any]  # ConvertConfig.settings() of the run
    device: str
    cpus: int
    threads: int
    jobs: int = 1  # fitting calls at once

    @property
    def projected_hours(self) -> float:
        """Projected wall-clock hours of a full run in one process."""
        return self.projected_seconds / 3600

    def as_dict(self) -> dict[str, Any]:
        """JSON-able fields, projected_hours included."""
        return {**dataclasses.asdict(self), "projected_hours": self.projected_hours}


def sample_indices(n_items: int, frames: int, batch: int = 1) -> list[int]:
    """Indices of `frames` items rounded up to runs of `batch` consecutive ones, spread from the first to the last."""
    # Spread, because datasets come sorted by camera or scene; every index when the runs would cover the dataset.
    if frames < 1 or batch < 1:
        raise ValueError(f"frames and batch must be >= 1, got {frames}, {batch}")
    runs = -(-frames // batch)
    if runs * batch >= n_items:
        return list(range(n_items))
    # Runs keep a batch's frames consecutive, as in a real run (scene mode shares backgrounds along a batch).
    # Starts are spaced (n_items - batch) / (runs - 1) >= batch apart, so runs never overlap.
    span = n_items - batch
    starts = [int(r * span / (runs - 1) + 0.5) for r in range(runs)] if runs > 1 else [span // 2]
    return [s + j for s in starts for j in range(batch)]


def full_run_batches(n_items: int, shard_size: int, batch: int) -> int:
    """Encode batches of a run over n_items: batches stay inside their shard."""
    return sum(-(-len(r) // batch) for r in plan_shards(n_items, shard_size))


def _tar_bytes(payload: float) -> int:
    # tarfile closes an archive with two zero blocks and pads it to whole records (see shards.complete_shard_problem).
    return -(-(round(payload) + 2 * tarfile.BLOCKSIZE) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _member_bytes(path: Path) -> int:
    """Bytes of a tar's members (headers and padded data), without its end blocks and record padding."""
    with tarfile.open(path) as tar:
        return max(
            (m.offset_data + -(-m.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE for m in tar.getmembers()), default=0
        )


def _mean_psnr(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    # One lossless frame at 999 dB would swamp the mean; report it only when every frame is lossless.
    finite = [v for v in present if v < shards.PSNR_LOSSLESS]
    if finite:
        return sum(finite) / len(finite)
    return shards.PSNR_LOSSLESS if present else None


def _device_name(config: ConvertConfig) -> str:
    device = getattr(config.encoder()[1], "device", None)  # classic codecs run on the CPU and have no device
    if device is None:
        return "cpu"
    dev = resolve_device(device)
    if dev.type == "cuda":
        import torch

        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)


def estimate(
    source: Source,
    config: ConvertConfig,
    frames: int = 16,
    *,
    device: str | None = None,
    progress: bool = False,
    log: Log = _stderr,
    tmp_dir: str | Path | None = None,
) -> Estimate:
    """Encode a spread sample of `frames` frames as a real run would, in a temporary folder; project the whole run."""
    # Through encode_dataset itself, so the sample pays what a real run pays (loading, batching, shard writing).
    import torch

    n_items = len(source.items)
    if not n_items:
        raise ValueError(f"{source.root}: the dataset holds no samples")
    if device is not None:
        config = dataclasses.replace(config, codec_config=config.codec_config.replace(device=device))
    picked = sample_indices(n_items, frames, config.batch)
    subset = dataclasses.replace(source, items=[source.items[i] for i in picked], warnings=[])
    # The whole dataset keeps the real shards; a sample is one shard of whole batches, so it holds no cut batch.
    sample_config = config if len(picked) == n_items else dataclasses.replace(config, shard_size=len(picked))
    writes: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rinr-estimate-", dir=tmp_dir) as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        result = encode_dataset(
            subset,
            out,
            sample_config,
            progress=progress,
            log=log,
            on_sample=lambda shard, key: writes.append(time.perf_counter()),
        )
        if not writes:
            raise SampleError(f"all {len(picked)} sample frame(s) failed; nothing to estimate from")
        found, _ = shards.find_shards([out])
        members = sum(_member_bytes(path) for path in found)
        metas = [shards.sample_json(s) for path in found for s in shards.iter_shard(path)]
    total = writes[-1] - start
    sample_batches = full_run_batches(len(picked), sample_config.shard_size, config.batch)
    # A batch's samples are written together once it is encoded: from the first write to the last, the sample ran
    # at its steady pace; what the first batch took beyond that is start-up, paid once per run.
    # With several jobs, batches finish in waves of `jobs`: the span from the first write to the last holds
    # (waves - 1) waves, `jobs` batches each.
    jobs = config.fitting_jobs(torch.get_num_threads())
    waves = -(-sample_batches // jobs)
    per_batch = (writes[-1] - writes[0]) / ((waves - 1) * jobs) if waves > 1 else total / sample_batches
    startup = max(0.0, writes[0] - start - per_batch * jobs)
    batches = full_run_batches(n_items, config.shard_size, config.batch)
    per_member_frame = members / len(writes)
    plan = plan_shards(n_items, config.shard_size)
    projected_bytes = sum(_tar_bytes(len(r) * per_member_frame) for r in plan)
    return Estimate(
        frames=n_items,
        sample=picked,
        sample_batches=sample_batches,
        failed=len(result.skipped),
        batch=config.batch,
        batches=batches,
        shards=len(plan),
        sample_seconds=total,
        startup_seconds=startup,
        seconds_per_batch=per_batch,
        seconds_per_frame=per_batch / config.batch,
        bytes_per_frame=projected_bytes / n_items,
        projected_seconds=startup + per_batch * batches,
        projected_bytes=projected_bytes,
        object_psnr=_mean_psnr(m["object_psnr"] for m in metas),
        background_psnr=_mean_psnr(m["background_psnr"] for m in metas),
        codec=config.codec,
        settings=config.settings(),
        device=_device_name(config),
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        threads=torch.get_num_threads(),
        jobs=jobs,
    )
