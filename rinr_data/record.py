"""The binary record of one frame (format version 1, codec "residual-siren"): pack and strictly parse.

Layout in docs/FORMAT.md. Parsing checks magic, version, codec id, checksum and every count against the
blob's size before allocating anything, and raises FormatError naming what is wrong.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import entropy
from .errors import FormatError
from .quantize import QuantizedINR, QuantizedTensor, tensor_bits
from .siren import SirenShape

if TYPE_CHECKING:
    from .grid_record import GridRecord

MAGIC = b"RINR"
FORMAT_VERSION = 1
CODEC_IDS = {"residual-siren": 1, "latent-grid": 2}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}

_HEADER = struct.Struct("<4sBBHHHfHBB")  # magic, version, codec, flags, height, width, w0, n_boxes, coder, reserved
_INR = struct.Struct("<BBB")  # width, depth, (first_layer_bits - 1) << 4 | (weight_bits - 1)
_BOX = struct.Struct("<4fe")  # x0, y0, x1, y1 (float pixels), Q (float16)
_LENGTH = struct.Struct("<I")
_CRC = struct.Struct("<I")

MAX_SIDE = 16384
MAX_BOXES = 4096
MAX_WIDTH = 255
MAX_DEPTH = 64
MAX_PARAMS = 1 << 24


@dataclass
class ObjectEntry:
    """A box and the INR of its residual, scaled by q."""

    box: tuple[float, float, float, float]
    q: float
    inr: QuantizedINR


@dataclass
class Record:
    """Everything needed to decode one frame."""

    height: int
    width: int
    w0: float
    background: QuantizedINR
    objects: list[ObjectEntry]
    coder: str = "brotli"
    codec: str = "residual-siren"

    @property
    def boxes(self) -> list[tuple[float, float, float, float]]:
        """The boxes, in record order."""
        return [o.box for o in self.objects]

    def inrs(self) -> list[QuantizedINR]:
        """Background first, then objects in box order."""
        return [self.background] + [o.inr for o in self.objects]


def _bits_byte(inr: QuantizedINR) -> int:
    first, rest = inr.tensors[0].bits, inr.tensors[1].bits
    return (first - 1) << 4 | (rest - 1)


def pack(record: "Record | GridRecord") -> bytes:
    """Serialise a record of any codec to bytes (deterministic)."""
    if record.codec == "latent-grid":
        from .grid_record import pack as pack_grid

        return pack_grid(record)  # type: ignore[arg-type]
    parts = [_HEADER.pack(MAGIC, FORMAT_VERSION, CODEC_IDS[record.codec], 0, record.height, record.width,
                          record.w0, len(record.objects), entropy.coder_id(record.coder), 0)]
    for inr in record.inrs():
        parts.append(_INR.pack(inr.shape.width, inr.shape.depth, _bits_byte(inr)))
    for obj in record.objects:
        parts.append(_BOX.pack(*obj.box, obj.q))
    tensors = [t for inr in record.inrs() for t in inr.tensors]
    parts.append(np.asarray([t.scale for t in tensors], np.float16).astype("<f2").tobytes())
    payload = entropy.compress([t.values for t in tensors], [t.bits for t in tensors], record.coder)
    parts += [_LENGTH.pack(len(payload)), payload]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


class Reader:
    """Bounds-checked cursor over a blob."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = memoryview(data)
        self.pos = pos

    @staticmethod
    def checked_body(blob: bytes) -> bytes:
        """The record without its CRC, after checking the CRC (raises FormatError)."""
        if len(blob) < _HEADER.size + _CRC.size:
            raise FormatError("record truncated: no checksum")
        body, (crc,) = blob[:-_CRC.size], _CRC.unpack_from(blob, len(blob) - _CRC.size)
        if zlib.crc32(body) != crc:
            raise FormatError("record checksum mismatch: the record is corrupt or truncated")
        return body

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"record truncated: {what} needs {n} bytes at offset {self.pos}, "
                              f"{len(self.data) - self.pos} left")
        view = self.data[self.pos:self.pos + n]
        self.pos += n
        return view

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack(self.take(st.size, what))


def read_header(blob: bytes) -> dict:
    """Magic, version and codec checks plus the fixed header fields (raises FormatError)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise FormatError(f"a record must be bytes, got {type(blob).__name__}")
    if len(blob) < _HEADER.size:
        raise FormatError(f"record truncated: {len(blob)} bytes, the header alone is {_HEADER.size}")
    magic, version, codec, flags, height, width, w0, n_boxes, coder, _ = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise FormatError(f"not a rinr record: magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported record format version {version}; this rinr_data reads version {FORMAT_VERSION}")
    if codec not in CODEC_NAMES:
        raise FormatError(f"unknown codec id {codec}; known: "
                          + ", ".join(f"{i} ({n})" for i, n in CODEC_NAMES.items()))
    return dict(flags=flags, height=height, width=width, w0=w0, n_boxes=n_boxes, coder=coder,
                codec=CODEC_NAMES[codec])


def _parse_shape(width: int, depth: int, bits: int, what: str) -> tuple[SirenShape, int, int]:
    if not (1 <= width <= MAX_WIDTH and 1 <= depth <= MAX_DEPTH):
        raise FormatError(f"{what}: INR shape {width}x{depth} out of bounds")
    first, rest = (bits >> 4) + 1, (bits & 15) + 1
    if first < 2 or rest < 2:
        raise FormatError(f"{what}: {first}/{rest}-bit quantisation is not valid (2..16 bits)")
    return SirenShape(width=width, depth=depth), first, rest


def check_frame(height: int, width: int, n_boxes: int) -> None:
    """Frame size and box count bounds shared by every codec (raises FormatError)."""
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise FormatError(f"image size {width}x{height} out of bounds (1..{MAX_SIDE})")
    if n_boxes > MAX_BOXES:
        raise FormatError(f"{n_boxes} boxes exceed the limit of {MAX_BOXES}")


def check_box(index: int, box: tuple[float, float, float, float], height: int, width: int) -> None:
    """A stored box must be finite, ordered and inside the frame (raises FormatError)."""
    if not all(math.isfinite(v) for v in box):
        raise FormatError(f"box {index}: non-finite coordinate")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise FormatError(f"box {index}: {list(box)} is not a positive-area box inside {width}x{height}")


def unpack(blob: bytes) -> "Record | GridRecord":
    """Parse and validate a record of any codec (raises FormatError for anything malformed)."""
    head = read_header(blob)
    if head["codec"] == "latent-grid":
        from .grid_record import unpack as unpack_grid  # the grid codec builds on this module's header

        return unpack_grid(blob)
    body = Reader.checked_body(blob)
    h, w, n_boxes = head["height"], head["width"], head["n_boxes"]
    check_frame(h, w, n_boxes)
    if not (math.isfinite(head["w0"]) and 0 < head["w0"] <= 1000):
        raise FormatError(f"w0 {head['w0']} out of bounds")
    reader = Reader(body, _HEADER.size)
    reader.take((n_boxes + 1) * _INR.size + n_boxes * _BOX.size, "INR and box tables")  # size check first
    reader.pos = _HEADER.size
    shapes = [_parse_shape(*reader.unpack(_INR, "INR table"), what="background" if i == 0 else f"box {i - 1}")
              for i in range(n_boxes + 1)]
    boxes = [reader.unpack(_BOX, "box table") for _ in range(n_boxes)]
    for i, (x0, y0, x1, y1, q) in enumerate(boxes):
        check_box(i, (x0, y0, x1, y1), h, w)
        if not (math.isfinite(q) and 0 < q <= 2):
            raise FormatError(f"box {i}: residual scale {q} out of bounds (0, 2]")
    bits = [b for shape, first, rest in shapes for b in tensor_bits(shape, rest, first)]
    counts = [n for shape, _, _ in shapes for fi, fo in shape.layer_dims() for n in (fi * fo, fo)]
    if sum(counts) > MAX_PARAMS:
        raise FormatError(f"record declares {sum(counts)} parameters, over the limit of {MAX_PARAMS}")
    scales = np.frombuffer(reader.take(2 * len(counts), "scale table"), "<f2").astype(np.float64)
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise FormatError("scale table holds a non-positive or non-finite scale")
    (length,) = reader.unpack(_LENGTH, "payload length")
    payload = bytes(reader.take(length, "weight payload"))
    if reader.pos != len(body):
        raise FormatError(f"record has {len(body) - reader.pos} unexpected trailing bytes")
    streams = entropy.decompress(payload, counts, bits, head["coder"])
    tensors = [QuantizedTensor(s, float(sc), b) for s, sc, b in zip(streams, scales, bits)]
    inrs, start = [], 0
    for shape, _, _ in shapes:
        n = 2 * len(shape.layer_dims())
        inrs.append(QuantizedINR(shape, tensors[start:start + n]))
        start += n
    objects = [ObjectEntry(tuple(b[:4]), b[4], inr) for b, inr in zip(boxes, inrs[1:])]
    return Record(h, w, head["w0"], inrs[0], objects, entropy.CODER_NAMES[head["coder"]], head["codec"])
