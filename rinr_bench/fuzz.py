"""Coverage-guided fuzzing (atheris, libFuzzer) of everything that reads untrusted bytes: records, shards and the
annotation files of the dataset readers.

Each target feeds one input to the library and lets only its documented errors through; anything else (another
exception, a wrong-sized image, a crash, an input over the time or memory limit) is a finding, which libFuzzer saves
as `crash-*` / `timeout-*` / `oom-*` under the findings folder. Findings go, minimised, into the regression corpus
`tests/data/fuzz/<target>/`, which `tests/test_fuzz.py` replays.

    python tools/fuzz.py record --seconds 60                  # one target for a minute, seeds made at run time
    python tools/fuzz.py all --runs 2000 --corpus out/corpus  # record, shard, annotations in turn, 2000 inputs each
    python tools/fuzz.py shard --replay tests/data/fuzz/shard # run saved inputs once, without atheris

Targets (input byte 0 is a mode byte the harness reads; the rest goes to the library):

- `record`: `rinr_data.unpack_record`, then `rinr_data.decode_records` of what parsed; only `FormatError` may leave,
  and a decoded image must have the size its header declares. Mode bit 0 recomputes the record's CRC-32 first, so
  mutations reach the structure behind the checksum; with bit 1 the input starts with a scene record (behind its u16
  length) that the frame may build on. Frames are capped at FUZZ_MAX_PIXELS to keep decodes cheap.
- `shard`: `rinr_data.shards.tar_samples` over the bytes, then `parse_sample` of each sample read (with its shard's
  scene table); `count_samples` must agree with what was read, and the members read may not hold more bytes than
  the shard (a plain tar cannot); only `FormatError` may leave. Mode bit 0 repairs the tar header checksums, so
  mutations reach member names, sizes and types.
- `annotations`: the bytes become one annotation file (mode byte mod 5: COCO `annotations.json`, a YOLO label file,
  YOLO `data.yaml`, a VOC XML, a DeepForest CSV) next to one small PNG; `open_source(folder)` and `load_sample` of
  every item may raise only `SourceError` / `SampleError`.
- `any`: byte 0 picks one of the three (mod 3) for the rest: one process, so one start-up, runs them all.

The seeds are built at run time from the real record and annotations under tests/data and from records made of
fixed integers (no fitting), so nothing large is committed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]  # the checkout: real seeds come from its tests/data
TEST_DATA = ROOT / "tests" / "data"
REGRESSIONS = TEST_DATA / "fuzz"
# Frames above this are refused by the record target, as MAX_IMAGE_PIXELS refuses larger ones in use: decoding stays
# a few milliseconds, and the bound checks themselves are what a mutated size exercises.
FUZZ_MAX_PIXELS = 128 * 128
CLASSES = ["a", "b"]
ANNOTATION_FILES = ("coco", "yolo-label", "yolo-yaml", "voc", "csv")
WORKDIR_ENV = "RINR_FUZZ_WORKDIR"
LIMIT_ENV = "RINR_FUZZ_CPU_SECONDS"  # CPU seconds one input may take before it is a finding (InputTimeout)
KNOWN_ENV = "RINR_FUZZ_KNOWN"  # JSON list of regexes: findings whose traceback matches one are known, not reported


@dataclass(frozen=True)
class Target:
    """One fuzz target: what it feeds, which errors are allowed out, its seeds and its input size limit."""

    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]
    max_len: int


# ---------------------------------------------------------------------------------------------- harness helpers


def with_crc(blob: bytes) -> bytes:
    """`blob` with its last four bytes replaced by the CRC-32 of the rest (a record's checksum)."""
    if len(blob) < 4:
        return blob
    return blob[:-4] + struct.pack("<I", zlib.crc32(blob[:-4]))


def repair_tar_checksums(data: bytes) -> bytes:
    """`data` with the checksum of every tar header it can walk to recomputed (stops at the first unreadable size)."""
    out = bytearray(data)
    pos = 0
    while pos + 512 <= len(out):
        header = out[pos : pos + 512]
        if not any(header):
            break  # end-of-archive block
        header[148:156] = b" " * 8
        out[pos + 148 : pos + 156] = b"%06o\0 " % (sum(header) & 0o777777)
        try:
            size = int(bytes(header[124:136]).strip(b"\0 ") or b"0", 8)
        except ValueError:
            break
        pos += 512 + -(-size // 512) * 512
    return bytes(out)


@contextlib.contextmanager
def small_frames() -> Iterator[None]:
    """MAX_IMAGE_PIXELS lowered to FUZZ_MAX_PIXELS in the block, restored after (replays run inside the test suite)."""
    from rinr_data.format import container

    before = container.MAX_IMAGE_PIXELS
    container.MAX_IMAGE_PIXELS = min(before, FUZZ_MAX_PIXELS)
    try:
        yield
    finally:
        container.MAX_IMAGE_PIXELS = before


# ---------------------------------------------------------------------------------------------- targets


def fuzz_record(data: bytes) -> None:
    """Parse and decode one record (and the scene it builds on); raises only FormatError for a bad one, and
    AssertionError for an image of another size than its header's."""
    import rinr_data as R
    from rinr_data.decode import parse_scenes
    from rinr_data.format import container

    if not data:
        return
    mode, blob, scenes = data[0], data[1:], {}
    if mode & 2 and len(blob) >= 2:  # a scene record first, behind its u16 length
        (length,) = struct.unpack_from("<H", blob)
        scene, blob = blob[2 : 2 + length], blob[2 + length :]
        scene = with_crc(scene) if mode & 1 else scene
        scenes = {container.scene_id(scene): scene}
    blob = with_crc(blob) if mode & 1 else blob
    with small_frames():
        record = R.unpack_record(blob)
        (image,) = R.decode_records([record], scenes=parse_scenes(scenes))
    head = container.read_header(blob)
    if tuple(image.shape) != (3, head.height, head.width) or image.dtype.is_floating_point:
        raise AssertionError(f"decoded {tuple(image.shape)} {image.dtype}, header says {head.width}x{head.height}")


def fuzz_shard(data: bytes) -> None:
    """Read one shard's samples and parse each; raises only FormatError (AssertionError if the two counts differ)."""
    from rinr_data import shards
    from rinr_data.errors import FormatError
    from rinr_data.pipeline.samples import parse_sample, with_scenes

    if not data:
        return
    tar = repair_tar_checksums(data[1:]) if data[0] & 1 else data[1:]
    raw: list[dict[str, Any]] = []
    damaged = False
    try:
        for sample in shards.tar_samples(io.BytesIO(tar), "fuzz.tar"):
            raw.append(sample)
    except FormatError:
        damaged = True  # the dataset keeps the whole samples read before the damage: so does this
    # A plain tar cannot hold more than its own size: more means the reader expanded something (a compressed
    # stream), which a hostile shard of a few hundred bytes can make gigabytes.
    held = sum(len(v) for sample in raw for v in sample.values() if isinstance(v, (bytes, bytearray)))
    if held > len(tar):
        raise AssertionError(f"the samples read hold {held} bytes, the shard has {len(tar)}")
    try:  # the shard list counts local shards this way before anything reads them
        counted = shards.count_samples(io.BytesIO(tar), "fuzz.tar")
    except FormatError:
        counted = None
    if not damaged and counted != len(raw):
        raise AssertionError(f"count_samples says {counted} samples, tar_samples read {len(raw)} of a whole shard")
    for sample in with_scenes(raw, "fuzz.tar"):
        try:
            parse_sample(sample, classes=CLASSES)
        except FormatError:
            pass


_folders: dict[str, Path] = {}


def _annotation_folder(kind: str) -> tuple[Path, Path]:
    """(dataset folder, the file in it the input becomes) for one annotation kind; folders are made once."""
    if not _folders:
        work = Path(os.environ.get(WORKDIR_ENV) or tempfile.mkdtemp(prefix="rinr-fuzz-"))
        png = _png()
        for name in ANNOTATION_FILES:
            folder = work / name
            if folder.exists():
                shutil.rmtree(folder)
            if name.startswith("yolo"):
                (folder / "images" / "train").mkdir(parents=True)
                (folder / "labels" / "train").mkdir(parents=True)
                (folder / "images" / "train" / "img.png").write_bytes(png)
                (folder / "labels" / "train" / "img.txt").write_text(_YOLO_LABEL)
                (folder / "data.yaml").write_text(_YOLO_YAML)
            elif name == "coco":
                (folder / "images").mkdir(parents=True)
                (folder / "images" / "img.png").write_bytes(png)
            else:
                folder.mkdir(parents=True)
                (folder / "img.png").write_bytes(png)
            _folders[name] = folder
    folder = _folders[kind]
    target = {
        "coco": "annotations.json",
        "yolo-label": "labels/train/img.txt",
        "yolo-yaml": "data.yaml",
        "voc": "img.xml",
        "csv": "annotations.csv",
    }[kind]
    return folder, folder / target


def fuzz_annotations(data: bytes) -> None:
    """Open a dataset whose one annotation file is `data[1:]` and load every sample; raises only Source/SampleError."""
    from rinr_data.sources import load_sample, open_source

    if not data:
        return
    folder, path = _annotation_folder(ANNOTATION_FILES[data[0] % len(ANNOTATION_FILES)])
    path.write_bytes(data[1:])
    for item in open_source(folder).items:
        load_sample(item)


# ---------------------------------------------------------------------------------------------- seeds


def grid_integers() -> tuple[Any, list[Any], list[Any]]:
    """(shape, latent levels, synthesis integers) of a 12x16 latent-grid frame (3 levels, hidden (4,), 8 bits) drawn
    from a fixed seed: records whose bytes depend on the format and the coders only (the fuzz seeds and the
    reference-bitstream tests)."""
    import numpy as np

    from rinr_data.codecs.grid.model import GridShape

    rng = np.random.default_rng(7)
    shape = GridShape(levels=3, hidden=(4,))
    latents = [np.round(rng.laplace(0, 1.5, size)).astype(np.int32) for size in shape.level_sizes(12, 16)]
    ints = [
        np.round(rng.normal(0, 30, n)).clip(-127, 127).astype(np.int32)
        for fi, fo in shape.layer_dims()
        for n in (fi * fo, fo)
    ]
    return shape, latents, ints


def _grid_records() -> list[Any]:
    """Grid records from fixed integers: plain, context model with box-only levels and margin, a scene and a frame
    that builds on it (each a few hundred bytes)."""
    import dataclasses

    import numpy as np

    from rinr_data.codecs.grid import record as grid_record
    from rinr_data.codecs.grid.context import LevelContext
    from rinr_data.codecs.grid.model import GridShape, level_masks
    from rinr_data.core.frames import box_mask
    from rinr_data.format.container import scene_id
    from rinr_data.format.quantize import QuantizedTensor

    boxes = [(1.0, 2.0, 6.5, 9.0), (9.0, 1.0, 15.0, 11.0)]
    shape, latents, ints = grid_integers()
    synthesis = [QuantizedTensor(v, 0.0078125, 8) for v in ints]
    plain = grid_record.GridRecord(12, 16, shape, 8, boxes, latents, synthesis)
    boxed_shape = GridShape(levels=3, hidden=(4,), box_levels=1, box_margin=1)
    masks = level_masks(box_mask(np.asarray(boxes), 12, 16), boxed_shape)
    boxed_latents = [lat * masks[0].numpy() if lv == 0 else lat for lv, lat in enumerate(latents)]
    weights, spreads = np.array([8, 10, 10, 10, 10, 0], np.int8), np.array([2, 1], np.int8)
    context = [LevelContext(np.full((2, 2), 1.5, np.float16), weights, spreads)] * 3
    contextual = dataclasses.replace(
        plain, shape=boxed_shape, latents=[lat.astype(np.int32) for lat in boxed_latents], context=context
    )
    scene = grid_record.GridRecord(12, 16, shape, 8, [], latents, synthesis)
    deltas = [np.clip(v // 10, -254, 254).astype(np.int32) for v in ints]
    frame = grid_record.GridRecord(
        12, 16, shape, 8, boxes[:1], latents, None, scene_id(grid_record.pack(scene)), deltas
    )
    return [plain, contextual, scene, frame]


def paper_inr(width: int, depth: int, seed: int) -> Any:
    """A SIREN of fixed integers (10-bit first-layer weights, 8-bit others) drawn from `seed`: paper records whose
    bytes depend on the format and the coders only (the fuzz seeds and the reference-bitstream tests)."""
    import numpy as np

    from rinr_data.codecs.paper.siren import SirenShape
    from rinr_data.codecs.paper.weights import QuantizedINR
    from rinr_data.format.quantize import QuantizedTensor

    rng = np.random.default_rng(seed)
    shape = SirenShape(width, depth)
    tensors = []
    for layer, (fi, fo) in enumerate(shape.layer_dims()):
        for n, bits in ((fi * fo, 10 if layer == 0 else 8), (fo, 8)):
            qmax = 2 ** (bits - 1) - 1
            values = np.clip(rng.normal(0, qmax / 4, n).round(), -qmax, qmax).astype(np.int32)
            tensors.append(QuantizedTensor(values, 0.0078125, bits))
    return QuantizedINR(shape, tensors)


def _paper_record(coder: str) -> Any:
    from rinr_data.codecs.paper import record

    objects = [record.ObjectEntry((1.0, 2.0, 6.5, 9.0), 0.25, paper_inr(6, 2, 1))]
    return record.Record(12, 16, 30.0, paper_inr(4, 2, 0), objects, coder)


def record_blobs(older_coder: bool = True) -> list[bytes]:
    """Valid records: grid (plain, context, scene, scene frame), paper (every coder), the real 0.3.1 and 0.5.0
    records, then (`older_coder`) the four grid records again with coder 3, which rinr-data <= 0.4 wrote."""
    import dataclasses

    import rinr_data as R
    from rinr_data.codecs.grid import record as grid_record

    grids = _grid_records()
    blobs = [R.pack_record(r) for r in grids]
    blobs += [R.pack_record(_paper_record(c)) for c in ("raw", "zstd", "brotli", "ans")]
    for version in ("0.3.1", "0.5.0"):
        real = TEST_DATA / "records" / f"grid-{version}.rinr"
        if real.is_file():
            blobs.append(real.read_bytes())
    if older_coder:
        blobs += [R.pack_record(dataclasses.replace(r, coder=grid_record.ANS)) for r in grids]
    return blobs


def record_seeds() -> list[bytes]:
    """Record target seeds: mode byte 1 (recompute the CRC) before each valid record, and a scene-mode frame after
    its scene (mode 3)."""
    blobs = record_blobs()
    scene, frame = blobs[2], blobs[3]
    return [b"\x01" + blob for blob in blobs] + [b"\x03" + struct.pack("<H", len(scene)) + scene + frame]


def _gradient(width: int = 32, height: int = 24) -> Any:
    """A small uint8 HxWx3 colour ramp."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
    return rgb.astype(np.uint8)


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(_gradient()).save(out, format="PNG")
    return out.getvalue()


def shard_bytes(samples: list[dict[str, Any]]) -> bytes:
    """A tar of webdataset samples as rinr-encode writes it, without the zero padding after the end blocks."""
    import webdataset

    out = io.BytesIO()
    writer = webdataset.TarWriter(out, encoder=False, mtime=0)
    for sample in samples:
        writer.write(sample)
    writer.close()
    data = out.getvalue().rstrip(b"\0")
    return data + b"\0" * (-len(data) % 512 + 1024)


def shard_seeds() -> list[bytes]:
    """Shard target seeds: grid records with a scene, paper and real records, JPEG / WebP, unsafe member names."""
    import torch

    import rinr_data as R
    from rinr_data import shards
    from rinr_data.codecs.classic import encode_classic
    from rinr_data.format.container import scene_id

    plain, contextual, scene, frame = (R.pack_record(r) for r in _grid_records())

    def sample(key: str, blob: bytes, codec: str = "rinr", scenes: dict[str, bytes] | None = None) -> dict[str, Any]:
        if codec == "rinr":
            rec = R.unpack_record(blob)
            height, width, boxes = rec.height, rec.width, [list(b) for b in rec.boxes]
        else:
            height, width, boxes = 24, 32, [[2.0, 3.0, 12.0, 14.0]]
        meta = shards.sample_meta(width, height, boxes, [i % 2 for i in range(len(boxes))], f"{key}.png", 40.0, 30.0)
        return shards.ShardSample(key, codec, blob, meta, scenes or {}).members()

    grid = [sample("a", plain), sample("sub/b", contextual), sample("c", frame, scenes={scene_id(scene): scene})]
    paper = [sample(f"p{i}", blob) for i, blob in enumerate(record_blobs(older_coder=False)[4:])]
    image = torch.from_numpy(_gradient()).permute(2, 0, 1)
    classic = [sample(f"{c}0", encode_classic(image, c, 80), c) for c in ("jpeg", "webp")]
    meta = grid[0]["json"]
    hostile = [("ok.rinr", plain), ("ok.json", meta), ("../x.rinr", plain), ("../x.json", meta), ("/abs.json", meta)]
    seeds = [shard_bytes(grid), shard_bytes(paper), shard_bytes(classic)]
    seeds.append(b"".join(_tar_member(n, d) for n, d in hostile) + b"\0" * 1024)
    return [b"\x01" + s for s in seeds]


def _tar_member(name: str, data: bytes) -> bytes:
    """One tar member (GNU header, data, padding) under any name, as a hostile writer would store it."""
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)


_YOLO_LABEL = "0 0.25 0.3 0.3 0.4\n1 0.7 0.6 0.2 0.5\n"
_YOLO_YAML = "path: .\ntrain: images/train\nnames: [cat, dog]\n"


def annotation_seeds() -> list[bytes]:
    """Annotation target seeds: one valid file of each kind (mode byte = its kind), and the real COCO file."""
    coco = {
        "images": [{"id": 1, "file_name": "img.png", "width": 32, "height": 24}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 11], "area": 110, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 4, 8, 12], "area": 96, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    voc = (
        "<annotation><filename>img.png</filename><size><width>32</width><height>24</height><depth>3</depth></size>"
        "<object><name>cat</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>12</xmax><ymax>14</ymax></bndbox></object>"
        "<object><name>dog</name><difficult>1</difficult><bndbox><xmin>20</xmin><ymin>4</ymin><xmax>28</xmax>"
        "<ymax>16</ymax></bndbox></object></annotation>"
    )
    csv = "image_path,xmin,ymin,xmax,ymax,label\nimg.png,2,3,12,14,cat\nimg.png,20,4,28,16,dog\n"
    texts = [json.dumps(coco), _YOLO_LABEL, _YOLO_YAML, voc, csv]
    seeds = [bytes([i]) + t.encode() for i, t in enumerate(texts)]
    real = TEST_DATA / "vtest-dev" / "annotations.json"
    if real.is_file():
        data = json.loads(real.read_text())
        for im in data["images"]:
            im["file_name"] = "img.png"  # the one image of the fuzz folder; the real boxes fall outside it
        seeds.append(b"\x00" + json.dumps(data, separators=(",", ":")).encode())
    return seeds


def _format_errors() -> tuple[type[BaseException], ...]:
    from rinr_data.errors import FormatError

    return (FormatError,)


def _source_errors() -> tuple[type[BaseException], ...]:
    from rinr_data.errors import SampleError, SourceError

    return (SourceError, SampleError)


EACH = ("record", "shard", "annotations")


def fuzz_any(data: bytes) -> None:
    """Byte 0 picks the target (mod 3) the rest goes to; raises only findings (that target's errors pass)."""
    if data:
        run_input(EACH[data[0] % len(EACH)], data[1:])


def any_seeds() -> list[bytes]:
    """Every target's seeds behind the byte that picks it."""
    return [bytes([i]) + seed for i, name in enumerate(EACH) for seed in target(name).seeds()]


TARGETS: dict[str, Callable[[], Target]] = {
    "record": lambda: Target("record", fuzz_record, _format_errors(), record_seeds, 8192),
    "shard": lambda: Target("shard", fuzz_shard, _format_errors(), shard_seeds, 16384),
    "annotations": lambda: Target("annotations", fuzz_annotations, _source_errors(), annotation_seeds, 8192),
    # All three in one process: one start-up (~10 s of imports and instrumentation) for a quick run of everything.
    "any": lambda: Target("any", fuzz_any, (), any_seeds, 16384),
}


def target(name: str) -> Target:
    """The fuzz target `name` (record, shard, annotations)."""
    if name not in TARGETS:
        raise ValueError(f"unknown fuzz target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]()


class InputTimeout(BaseException):
    """An input ran past its CPU-time limit: a hang. A BaseException, so no catch-all of the library (`except
    Exception` -> FormatError) can turn it into an allowed error."""


@contextlib.contextmanager
def cpu_limit(seconds: float | None) -> Iterator[None]:
    """Raise InputTimeout in the block after `seconds` of CPU time (main thread only; None: no limit).

    CPU time (SIGPROF), not wall time: libFuzzer keeps SIGALRM for its own -timeout, and a busy loop is the hang a
    parser can fall into (a tar member declaring 2**62 bytes is skipped 10 KiB at a time).
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise InputTimeout(f"input still running after {seconds:g} s of CPU time")

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def run_input(name: str, data: bytes, seconds: float | None = None) -> None:
    """Run one input through target `name` as the fuzzer does: its allowed errors pass, anything else raises
    (InputTimeout after `seconds` of CPU time)."""
    t = target(name)
    with cpu_limit(seconds):
        try:
            t.run(data)
        except t.allowed:
            pass


# ---------------------------------------------------------------------------------------------- running


@dataclass
class FuzzResult:
    """What one libFuzzer run reported."""

    target: str
    returncode: int
    runs: int | None
    seconds: int | None
    coverage: int | None
    corpus: int | None
    findings: list[str]

    def line(self) -> str:
        """One line for a log or a table."""
        rate = f" ({self.runs / max(self.seconds, 1):.0f}/s)" if self.runs and self.seconds is not None else ""
        found = ", ".join(self.findings) if self.findings else "none"
        return (
            f"{self.target}: {self.runs} inputs in {self.seconds} s{rate}, coverage {self.coverage} edges, corpus "
            f"{self.corpus} inputs; exit {self.returncode}; findings: {found}"
        )


def _last_int(pattern: str, text: str) -> int | None:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else None


def parse_log(name: str, returncode: int, log: str) -> FuzzResult:
    """The figures of a libFuzzer log: inputs run, seconds, coverage, corpus size and the files of any findings."""
    return FuzzResult(
        name,
        returncode,
        _last_int(r"stat::number_of_executed_units: (\d+)", log) or _last_int(r"Done (\d+) runs", log),
        _last_int(r"Done \d+ runs in (\d+) second", log),
        _last_int(r"\bcov: (\d+)", log),
        _last_int(r"\bcorp: (\d+)/", log),
        re.findall(r"Test unit written to (\S+)", log),
    )


def fuzz(
    name: str,
    corpus: Path,
    findings: Path,
    runs: int | None = None,
    seconds: int | None = None,
    seed: int = 1,
    timeout: int = 30,
    extra: Sequence[str] = (),
    quiet: bool = False,
    known: Sequence[str] = (),
) -> FuzzResult:
    """Fuzz target `name` in a child process (libFuzzer ends its process) from `corpus`, findings to `findings`."""
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    # The harness's CPU limit names where a Python loop hangs; libFuzzer's wall-clock limit is the backstop.
    flags = [f"-seed={seed}", f"-timeout={timeout + 10}", f"-artifact_prefix={findings}/", "-print_final_stats=1"]
    if runs is not None:
        flags.append(f"-runs={runs}")
    if seconds is not None:
        flags.append(f"-max_total_time={seconds}")
    with tempfile.TemporaryDirectory(prefix="rinr-fuzz-") as work:
        cmd = [sys.executable, "-m", "rinr_bench.fuzz", "--child", name, str(corpus), *flags, *extra]
        env = {**os.environ, WORKDIR_ENV: work, KNOWN_ENV: json.dumps(list(known)), LIMIT_ENV: str(timeout)}
        env.setdefault("OMP_NUM_THREADS", "1")  # tiny tensors: thread hand-offs would dominate
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if not quiet:
                sys.stderr.write(line)
        proc.wait()
    return parse_log(name, proc.returncode, "".join(lines))


def _child(argv: list[str]) -> None:
    """In the fuzzing process: instrument the library, seed an empty corpus, hand over to libFuzzer (never returns)."""
    import atheris

    name, corpus = argv[0], Path(argv[1])
    with atheris.instrument_imports(include=["rinr_data", "webdataset", "yaml"]):
        import rinr_data  # noqa: F401
        import rinr_data.pipeline.samples  # noqa: F401
        import rinr_data.sources  # noqa: F401
    t = target(name)
    if not any(corpus.iterdir()):
        for i, data in enumerate(t.seeds()):
            (corpus / f"seed-{i:02d}").write_bytes(data)

    known = [re.compile(k) for k in json.loads(os.environ.get(KNOWN_ENV) or "[]")]

    per_input = float(os.environ.get(LIMIT_ENV) or 0) or None

    def one(data: bytes) -> None:
        try:
            run_input(name, data, per_input)
        except (Exception, InputTimeout):
            # A finding already saved and reported (not yet fixed) would stop every run at once: let the search go on.
            if not any(k.search(traceback.format_exc()) for k in known):
                raise

    flags = argv[2:]
    if not any(a.startswith("-max_len=") for a in flags):
        flags.append(f"-max_len={t.max_len}")
    atheris.Setup([sys.argv[0], str(corpus), *flags], one)
    atheris.Fuzz()


def replay(name: str, paths: list[Path], seconds: float | None = 30) -> int:
    """Run saved inputs through target `name` once each; print the traceback of every finding; 1 if any."""
    failed = 0
    for path in paths:
        for file in sorted(path.iterdir()) if path.is_dir() else [path] if path.exists() else []:
            try:
                run_input(name, file.read_bytes(), seconds)
            except (Exception, InputTimeout):
                failed += 1
                print(f"{file}: FINDING", file=sys.stderr)
                traceback.print_exc()
            else:
                print(f"{file}: ok")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Command line: fuzz one target (or all) for a time or a number of inputs, or replay saved inputs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        _child(argv[1:])
        return 2  # not reached: libFuzzer exits the process
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("target", choices=[*TARGETS, "all"], help=f"what to fuzz (all: {', '.join(EACH)} in turn)")
    p.add_argument("paths", nargs="*", type=Path, help="with --replay: input files or folders to run once each")
    p.add_argument("--replay", action="store_true", help="run the inputs in PATHS once, without atheris")
    p.add_argument("--runs", type=int, help="stop after this many inputs (default: with no --seconds either, 10000)")
    p.add_argument("--seconds", type=int, help="stop after this many seconds")
    p.add_argument("--corpus", type=Path, help="corpus folder (seeded when empty; default: a temporary folder)")
    p.add_argument("--findings", type=Path, default=Path("out/fuzz"), help="where findings go (default: out/fuzz)")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (default: 1)")
    p.add_argument("--timeout", type=int, default=30, help="CPU seconds one input may take (default: 30)")
    p.add_argument("--quiet", action="store_true", help="print only the summary line of each target")
    p.add_argument(
        "--known", action="append", default=[], metavar="REGEX", help="ignore findings whose traceback matches"
    )
    p.epilog = "Flags after -- go to libFuzzer as they are (e.g. -- -use_value_profile=1 -jobs=2)."
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_intermixed_args(argv[: len(argv) - len(extra) - (1 if "--" in argv else 0)])
    names = list(EACH) if args.target == "all" else [args.target]
    if args.replay:
        return max(replay(n, args.paths or [REGRESSIONS / n], args.timeout) for n in names)
    runs = 10000 if args.runs is None and args.seconds is None else args.runs
    worst = 0
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"rinr-fuzz-{name}-") as tmp:
            corpus = args.corpus / name if args.corpus is not None and len(names) > 1 else args.corpus
            result = fuzz(
                name,
                corpus or Path(tmp),
                args.findings / name,
                runs,
                args.seconds,
                args.seed,
                args.timeout,
                extra,
                args.quiet,
                args.known,
            )
        print(result.line(), flush=True)
        worst = max(worst, result.returncode)
    return worst


if __name__ == "__main__":
    sys.exit(main())
