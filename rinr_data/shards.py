"""Shard layout (docs/SHARDS.md): sample members, atomic shard writing, the manifest, and reading shards back.

Shards are plain WebDataset tars written with webdataset's TarWriter; this module adds the naming, the
per-sample JSON, the write-then-rename that makes a shard's final name mean "complete", and checks on read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

import numpy as np
import webdataset

from .errors import FormatError

LAYOUT_VERSION = 1
MANIFEST = "manifest.json"
WORK_DIR = ".rinr-encode"  # resume state, per-shard reports and partial shards live here, inside the output
# Image member extension per codec; "jpg" rather than "jpeg" because webdataset's decoders key on it.
IMAGE_EXTENSIONS = {"rinr": "rinr", "jpeg": "jpg", "webp": "webp", "avif": "avif"}
CODEC_OF_EXTENSION = {v: k for k, v in IMAGE_EXTENSIONS.items()}
JSON_FIELDS = ("width", "height", "boxes", "labels", "source", "object_psnr", "background_psnr")
SCENE_EXTENSION = "scene"
PSNR_LOSSLESS = 999.0
MAX_JSON_SIDE = 1 << 16  # a frame side a sample JSON may declare (records bound theirs tighter: format.container)
# '/'-separated non-empty parts of letters, digits, '_' and '-': no dots (so no '..' and no webdataset extension
# split), no leading '/', no empty part. A key becomes a file path in rinr-decode; this is what keeps it inside OUT.
_KEY = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
_SHARD = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{6})\.tar$")


@dataclass
class ShardSample:
    """One sample as stored: key, codec ("rinr", "jpeg", ...), image member bytes and its JSON metadata.

    `scenes` (scene mode) are scene records by id, stored as `<key>.<id>.scene` members of the first sample of the
    shard that uses each scene.
    """

    key: str
    codec: str
    image: bytes
    meta: dict[str, Any]
    scenes: dict[str, bytes] = field(default_factory=dict)

    def members(self) -> dict[str, Any]:
        """The webdataset sample dict: {"__key__", "<ext>": bytes, "json": bytes, "<id>.scene": bytes...}."""
        check_key(self.key)
        members = {
            "__key__": self.key,
            IMAGE_EXTENSIONS[self.codec]: bytes(self.image),
            "json": json.dumps(self.meta, sort_keys=True).encode(),
        }
        for scene, blob in sorted(self.scenes.items()):
            members[f"{scene}.{SCENE_EXTENSION}"] = bytes(blob)
        return members


@dataclass
class ShardInfo:
    """A complete shard as listed in the manifest."""

    name: str
    samples: int
    bytes: int
    sha256: str
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"key", "source", "error"} per failed sample

    def manifest_entry(self) -> dict[str, Any]:
        """The manifest's view: name, samples, bytes, sha256."""
        return {"name": self.name, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256}


def check_key(key: Any) -> str:
    """`key` if it is a safe sample key (see _KEY), else a FormatError naming it; used on write and on every read."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise FormatError(
            f"sample key {key!r} is not safe: keys must be free of dots and made of '/'-separated non-empty parts "
            "of letters, digits, '_' and '-'"
        )
    return key


def check_labels(labels: Any, classes: Sequence[str] | None) -> list[int]:
    """A sample JSON's labels as class indices: non-negative ints, below len(classes) when the classes are known."""
    if not isinstance(labels, list):
        raise FormatError(f"labels must be a list, got {type(labels).__name__}")
    for label in labels:
        # bool is an int subclass, and 1.0 would pass a range check: only true ints are class indices.
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise FormatError(f"label {label!r} is not a class index (a non-negative int)")
        if classes is not None and label >= len(classes):
            raise FormatError(
                f"label {label!r} is not a class index: the manifest has {len(classes)} class(es)"
                + (f" (0 to {len(classes) - 1})" if classes else "")
            )
    return labels


def shard_name(prefix: str, index: int) -> str:
    """`{prefix}-{index:06d}.tar`."""
    return f"{prefix}-{index:06d}.tar"


def check_prefix(prefix: str) -> str:
    """Validate a shard prefix: a file name without dots or slashes."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
        raise ValueError(f"shard prefix must be letters, digits, '_' or '-', got {prefix!r}")
    return prefix


def _json_psnr(value: float) -> float | None:
    # JSON has no infinity: a lossless region gets a sentinel far above any finite uint8 PSNR (~110 dB at most
    # for 8K frames), so thresholds like `object_psnr >= 30` still keep it; NaN (undefined) becomes null.
    if math.isnan(value):
        return None
    return PSNR_LOSSLESS if math.isinf(value) else float(value)


def stored_boxes(boxes: Any) -> list[list[float]]:
    """Boxes as the JSON holds them: float32 values (what the record stores), as Python floats."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).astype(np.float32)
    return [[float(v) for v in row] for row in arr]


def sample_meta(
    width: int, height: int, boxes: Any, labels: Sequence[int], source: str, object_psnr: float, background_psnr: float
) -> dict[str, Any]:
    """The `{key}.json` member; PSNR is null where undefined (no boxes / no background), 999 where lossless."""
    boxes_out = stored_boxes(boxes)
    if len(boxes_out) != len(labels):
        raise ValueError(f"{len(boxes_out)} boxes but {len(labels)} labels")
    return {
        "width": int(width),
        "height": int(height),
        "boxes": boxes_out,
        "labels": [int(v) for v in labels],
        "source": str(source),
        "object_psnr": _json_psnr(object_psnr),
        "background_psnr": _json_psnr(background_psnr),
    }


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def work_dir(out: str | Path) -> Path:
    """The folder inside the output that holds resume state and partial shards."""
    return Path(out) / WORK_DIR


def write_shard(
    out: str | Path, name: str, samples: Iterable[ShardSample], skipped: Iterable[dict[str, str]] = ()
) -> ShardInfo:
    """Write samples to `out/.rinr-encode/name.partial`, then rename to `out/name`: the final name means complete.

    `samples` may be a lazy generator (encoding happens while writing); if it raises, the partial file is
    removed and nothing appears under the final name. `skipped` is read after `samples` is exhausted.
    """
    out = Path(out)
    tmp = work_dir(out) / (name + ".partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with open(tmp, "wb") as f:
            # Fixed mtime and owner: the same samples always give the same shard bytes (and sha256).
            writer = webdataset.TarWriter(f, encoder=False, mtime=0)
            try:
                for sample in samples:
                    writer.write(sample.members())
                    count += 1
            finally:
                writer.close()  # also on failure, so the tar stream does not flush into a closed file later
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    info = ShardInfo(name, count, tmp.stat().st_size, sha256_file(tmp), list(skipped))
    # The report goes down before the rename, so a complete shard always has one.
    write_json_atomic(report_path(out, name), asdict(info))
    os.replace(tmp, out / name)
    return info


def report_path(out: str | Path, name: str) -> Path:
    """Where the per-shard report (ShardInfo with skipped samples) of a complete shard is kept."""
    return work_dir(out) / (name + ".json")


def read_shard_info(out: str | Path, name: str) -> ShardInfo:
    """ShardInfo of a complete shard: from its report, or recomputed from the tar if the report is missing."""
    out = Path(out)
    path = out / name
    try:
        info = ShardInfo(**json.loads(report_path(out, name).read_text()))
        if info.bytes == path.stat().st_size:
            return info
    except (OSError, ValueError, TypeError):
        pass
    samples = sum(1 for _ in iter_shard(path))
    return ShardInfo(name, samples, path.stat().st_size, sha256_file(path))


def _recorded_info(out: Path, name: str) -> tuple[dict[str, Any], str] | None:
    """(entry with bytes and sha256, where it came from) for a shard: its report, else the manifest's entry."""
    try:
        report = json.loads(report_path(out, name).read_text())
        if isinstance(report, dict) and {"bytes", "sha256"} <= set(report):
            return report, f"its report {WORK_DIR}/{name}.json"
    except (OSError, ValueError):
        pass
    try:
        for entry in read_manifest(out)["shards"]:
            if entry["name"] == name:
                return entry, MANIFEST
    except FormatError:
        pass
    return None


def complete_shard_problem(out: str | Path, name: str, max_samples: int) -> str | None:
    """Why `out/name` is not the complete shard that was written there (None when it is), for a resumed encode.

    Checked against the size and sha256 its report (or else the manifest) recorded; with neither, the shard must
    read to the end, hold at most `max_samples` samples, and end the way every shard written here ends.
    """
    out = Path(out)
    path = out / name
    size = path.stat().st_size
    recorded = _recorded_info(out, name)
    if recorded is not None:
        entry, where = recorded
        if size != entry["bytes"]:
            return f"{size} bytes, {where} says {entry['bytes']}"
        if sha256_file(path) != entry["sha256"]:
            return f"sha256 differs from the one {where} holds"
        return None
    # tarfile closes every archive it writes with two zero blocks, padded with zeros to whole records; a cut
    # shard can still read without error (tarfile does not require the end blocks), so look for them.
    with open(path, "rb") as f:
        f.seek(max(0, size - 2 * tarfile.BLOCKSIZE))
        tail = f.read()
    if size % tarfile.RECORDSIZE or tail != bytes(2 * tarfile.BLOCKSIZE):
        return f"no record of it and its {size} bytes do not end the way a complete tar ends"
    try:
        samples = sum(1 for _ in iter_shard(path))
    except FormatError as exc:
        return str(exc)
    if samples > max_samples:
        return f"holds {samples} samples, more than the {max_samples} planned for it"
    return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file and rename it over `path`, so readers never see half a file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_manifest(out: str | Path, manifest: dict[str, Any]) -> Path:
    """Write `out/manifest.json` atomically."""
    path = Path(out) / MANIFEST
    write_json_atomic(path, manifest)
    return path


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Load and check `folder/manifest.json` (raises FormatError naming what is wrong)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise FormatError(f"{path}: cannot read manifest: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(data, dict) or data.get("format") != "rinr-shards":
        raise FormatError(f"{path}: not a rinr-data shard manifest")
    if data.get("version") != LAYOUT_VERSION:
        raise FormatError(
            f"{path}: shard layout version {data.get('version')}; this rinr_data reads version {LAYOUT_VERSION}"
        )
    for n, s in enumerate(data.get("shards", [])):
        if not isinstance(s, dict) or not {"name", "samples", "bytes", "sha256"} <= set(s):
            raise FormatError(f"{path}: shards[{n}] needs name, samples, bytes and sha256")
    classes = data.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise FormatError(f"{path}: classes must be a list of names")
    return data


# ---------------------------------------------------------------------------------------------- reading


# tarfile's stream mode (as webdataset opens shards) inflates gzip, bzip2 and xz transparently: a 139-byte bzip2 shard
# inflated to a 16 MiB member in fuzzing. Shards are written as plain tar, so a compressed stream is refused.
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


class _PlainTar:
    """A read-only stream that refuses compressed data at its start and reads past its end (FormatError naming the
    shard)."""

    # tarfile's stream mode skips a member by reading block after block up to its declared end, even past the end of
    # the stream: a header declaring 2**62 bytes hung the reader in fuzzing. A few empty reads at the end are normal.
    MAX_READS_PAST_END = 64

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self._stream, self._name = stream, name
        self._head = stream.read(6) or b""
        self._past_end = 0
        for magic, kind in _COMPRESSED.items():
            if self._head.startswith(magic):
                raise FormatError(f"{name}: a {kind}-compressed stream, not a plain tar shard; refused")

    def read(self, size: int = -1) -> bytes:
        """Bytes of the stream, the peeked head first."""
        head, self._head = self._head, b""
        if size is None or size < 0:
            return head + self._stream.read()
        if len(head) >= size:
            self._head = head[size:]
            return head[:size]
        data = head + self._stream.read(size - len(head))
        if not data and size:
            self._past_end += 1
            if self._past_end > self.MAX_READS_PAST_END:
                raise FormatError(f"{self._name}: a tar member runs past the end of the shard (truncated or forged)")
        return data

    def close(self) -> None:
        """Close the underlying stream."""
        self._stream.close()


def tar_samples(stream: BinaryIO, name: str) -> Iterator[dict[str, Any]]:
    """Samples {"__key__", "__url__", ext: bytes} of one tar stream, grouped by webdataset's own tar iterators.

    Every reader of shards (the dataset, the inspect and decode tools) goes through here, so they group members
    exactly as plain webdataset does; any failure becomes a FormatError naming `name`.
    """
    from webdataset.tariterators import group_by_keys, tar_file_expander

    try:
        for sample in group_by_keys(tar_file_expander([{"url": name, "stream": _PlainTar(stream, name)}])):
            try:
                check_key(sample["__key__"])
            except FormatError:
                # A member name such as '../x.rinr' or '/abs/x.rinr': none of its bytes reach a reader, and
                # sample_json / image_member raise for its key, so each reader handles it as one damaged sample
                # (named with its shard) and goes on with the rest of the shard.
                sample = {"__key__": sample["__key__"], "__url__": sample.get("__url__")}
            yield sample
    except FormatError:
        raise
    except Exception as exc:  # tarfile, EOF, webdataset's duplicate-member ValueError
        raise FormatError(f"{name}: cannot read shard: {exc}") from exc


def count_samples(stream: BinaryIO, name: str) -> int:
    """Samples in one tar stream as `tar_samples` would yield them, from the member names (no member is kept)."""
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    names: list[str] = []
    try:
        # select_files sees each name after webdataset's own member filters and, returning False, skips the read.
        for _ in tar_file_iterator(_PlainTar(stream, name), select_files=lambda fname: names.append(fname) or False):
            pass
        return sum(1 for _ in group_by_keys({"fname": n, "data": b"", "__url__": name} for n in names))
    except Exception as exc:  # tarfile, EOF, webdataset's duplicate-member ValueError
        raise FormatError(f"{name}: cannot read shard: {exc}") from exc


def iter_shard(path: str | Path) -> Iterator[dict[str, Any]]:
    """Samples of one local shard as {"__key__", "__shard__", ext: bytes}; raises FormatError for a broken tar."""
    path = Path(path)
    with open(path, "rb") as stream:
        for sample in tar_samples(stream, path.name):
            sample["__shard__"] = path.name
            yield sample


def scene_members(samples: Iterable[dict[str, Any]]) -> dict[str, bytes]:
    """Scene records (id -> bytes) carried by the samples of one shard as `<key>.<id>.scene` members."""
    suffix = "." + SCENE_EXTENSION
    return {
        ext[: -len(suffix)]: bytes(data)
        for sample in samples
        for ext, data in sample.items()
        if isinstance(ext, str) and ext.endswith(suffix)
    }


def image_member(sample: dict[str, Any]) -> tuple[str, bytes]:
    """(codec, bytes) of a sample's image member; FormatError if it has none or several, or an unsafe key."""
    check_key(sample.get("__key__"))
    found = [(CODEC_OF_EXTENSION[k], v) for k, v in sample.items() if k in CODEC_OF_EXTENSION]
    if len(found) != 1:
        raise FormatError(
            f"sample {sample.get('__key__')!r}: expected one image member "
            f"({', '.join('.' + e for e in IMAGE_EXTENSIONS.values())}), found {len(found)}"
        )
    return found[0]


def sample_json(sample: dict[str, Any]) -> dict[str, Any]:
    """The parsed and checked `{key}.json` member of a sample (FormatError if missing, malformed or its key unsafe)."""
    key = check_key(sample.get("__key__"))
    if "json" not in sample:
        raise FormatError(f"sample {key!r}: no .json member")
    try:
        meta = json.loads(sample["json"])
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"sample {key!r}: malformed .json: {exc}") from exc
    missing = [k for k in JSON_FIELDS if k not in meta] if isinstance(meta, dict) else list(JSON_FIELDS)
    if missing:
        raise FormatError(f"sample {key!r}: .json lacks {missing}")
    for name in ("width", "height"):
        value = meta[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_JSON_SIDE:
            raise FormatError(f"sample {key!r}: .json {name} {value!r} is not a size in pixels (1..{MAX_JSON_SIDE})")
    boxes, labels = meta["boxes"], meta["labels"]
    if not isinstance(boxes, list) or not all(_is_box(b) for b in boxes):
        raise FormatError(f"sample {key!r}: .json boxes must be a list of [x0, y0, x1, y1] finite numbers")
    if not isinstance(labels, list) or len(boxes) != len(labels):
        raise FormatError(f"sample {key!r}: {len(boxes)} boxes but labels {str(labels)[:80]}")
    return meta


def _is_box(box: Any) -> bool:
    return (
        isinstance(box, list)
        and len(box) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
    )


def find_shards(paths: Sequence[str | Path]) -> tuple[list[Path], dict[str, Any] | None]:
    """Shard files named by `paths` (a folder with or without manifest, or .tar files) and the manifest if any."""
    manifest, shards = None, []
    for p in map(Path, paths):
        if p.is_dir():
            if (p / MANIFEST).is_file():
                manifest = read_manifest(p)
                found = [p / _shard_file(s["name"], p) for s in manifest["shards"]]
            else:
                found = sorted(q for q in p.glob("*.tar") if _SHARD.match(q.name) and q.is_file())
            if not found:
                # Nothing to read is an error, not an empty success: a wrong folder must not pass --verify.
                raise FormatError(f"{p}: no shards found")
            shards += found
        elif p.is_file():
            shards.append(p)
            if manifest is None and (p.parent / MANIFEST).is_file():
                manifest = read_manifest(p.parent)
        else:
            raise FormatError(f"{p}: no such shard file or folder")
    return shards, manifest


def _shard_file(name: Any, folder: Path) -> str:
    """A manifest's shard name, which must be a file name inside the manifest's folder."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise FormatError(f"{folder / MANIFEST}: shard name {name!r} is not a file name in {folder}")
    return name
