"""Records of codec 1, "residual-siren" (Residual-INR as published): background and object SIRENs, quantised.

Layout in docs/FORMAT.md. Parsing checks every count against the blob's size before allocating anything, and raises
FormatError naming what is wrong.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from ...core.frames import box_region
from ...errors import FormatError
from ...format import entropy
from ...format.container import (
    HEADER,
    LENGTH,
    Reader,
    check_box,
    check_decode_cost,
    check_frame,
    pack_header,
    read_header,
    seal,
)
from ...format.quantize import QuantizedTensor
from .siren import SirenShape
from .weights import QuantizedINR, tensor_bits

CODEC = "residual-siren"
CODEC_ID = 1  # the record header's codec id: part of the format, never renumber
_INR = struct.Struct("<BBB")  # width, depth, (first_layer_bits - 1) << 4 | (weight_bits - 1)
_BOX = struct.Struct("<4fe")  # x0, y0, x1, y1 (float pixels), Q (float16)

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
    codec: str = CODEC

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


def pack(record: Record) -> bytes:
    """Serialise a residual-SIREN record to bytes (deterministic)."""
    parts = [
        pack_header(
            CODEC_ID, 0, record.height, record.width, record.w0, len(record.objects), entropy.coder_id(record.coder)
        )
    ]
    for inr in record.inrs():
        parts.append(_INR.pack(inr.shape.width, inr.shape.depth, _bits_byte(inr)))
    for obj in record.objects:
        parts.append(_BOX.pack(*obj.box, obj.q))
    tensors = [t for inr in record.inrs() for t in inr.tensors]
    parts.append(np.asarray([t.scale for t in tensors], np.float16).astype("<f2").tobytes())
    payload = entropy.compress([t.values for t in tensors], [t.bits for t in tensors], record.coder)
    parts += [LENGTH.pack(len(payload)), payload]
    return seal(b"".join(parts))


def _parse_shape(width: int, depth: int, bits: int, what: str) -> tuple[SirenShape, int, int]:
    if not (1 <= width <= MAX_WIDTH and 1 <= depth <= MAX_DEPTH):
        raise FormatError(f"{what}: INR shape {width}x{depth} out of bounds")
    first, rest = (bits >> 4) + 1, (bits & 15) + 1
    if first < 2 or rest < 2:
        raise FormatError(f"{what}: {first}/{rest}-bit quantisation is not valid (2..16 bits)")
    return SirenShape(width=width, depth=depth), first, rest


def unpack(blob: bytes) -> Record:
    """Parse and validate a residual-SIREN record (raises FormatError for anything malformed)."""
    head = read_header(blob)
    if head.codec_id != CODEC_ID:
        raise FormatError(f"codec id {head.codec_id} is not {CODEC_ID} ({CODEC})")
    body = Reader.checked_body(blob)
    h, w, n_boxes = head.height, head.width, head.n_boxes
    check_frame(h, w, n_boxes)
    if not (math.isfinite(head.w0) and 0 < head.w0 <= 1000):
        raise FormatError(f"w0 {head.w0} out of bounds")
    reader = Reader(body, HEADER.size)
    reader.take((n_boxes + 1) * _INR.size + n_boxes * _BOX.size, "INR and box tables")  # size check first
    reader.pos = HEADER.size
    shapes = [
        _parse_shape(*reader.unpack(_INR, "INR table"), what="background" if i == 0 else f"box {i - 1}")
        for i in range(n_boxes + 1)
    ]
    boxes = [reader.unpack(_BOX, "box table") for _ in range(n_boxes)]
    for i, (x0, y0, x1, y1, q) in enumerate(boxes):
        check_box(i, (x0, y0, x1, y1), h, w)
        if not (math.isfinite(q) and 0 < q <= 2):
            raise FormatError(f"box {i}: residual scale {q} out of bounds (0, 2]")
    bits = [b for shape, first, rest in shapes for b in tensor_bits(shape, rest, first)]
    counts = [n for shape, _, _ in shapes for fi, fo in shape.layer_dims() for n in (fi * fo, fo)]
    if sum(counts) > MAX_PARAMS:
        raise FormatError(f"record declares {sum(counts)} parameters, over the limit of {MAX_PARAMS}")
    # Each SIREN runs over the pixels it covers: the background over the frame, an object over its box.
    areas = [h * w] + [box_region(b[:4], h, w).area for b in boxes]
    macs = sum(area * sum(fi * fo for fi, fo in shape.layer_dims()) for area, (shape, _, _) in zip(areas, shapes))
    check_decode_cost(macs, f"a {w}x{h} residual-SIREN frame")
    scales = np.frombuffer(reader.take(2 * len(counts), "scale table"), "<f2").astype(np.float64)
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise FormatError("scale table holds a non-positive or non-finite scale")
    (length,) = reader.unpack(LENGTH, "payload length")
    payload = bytes(reader.take(length, "weight payload"))
    if reader.pos != len(body):
        raise FormatError(f"record has {len(body) - reader.pos} unexpected trailing bytes")
    streams = entropy.decompress(payload, counts, bits, head.coder)
    tensors = [QuantizedTensor(s, float(sc), b) for s, sc, b in zip(streams, scales, bits)]
    inrs, start = [], 0
    for shape, _, _ in shapes:
        n = 2 * len(shape.layer_dims())
        inrs.append(QuantizedINR(shape, tensors[start : start + n]))
        start += n
    objects = [ObjectEntry(tuple(b[:4]), b[4], inr) for b, inr in zip(boxes, inrs[1:])]
    return Record(h, w, head.w0, inrs[0], objects, entropy.CODER_NAMES[head.coder], CODEC)
