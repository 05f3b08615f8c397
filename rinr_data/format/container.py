"""The record container every codec writes into (docs/FORMAT.md): magic, version, codec id, header, CRC, bounds.

The container knows no codec: it reads the fixed header and checks the checksum and the frame bounds, and hands the
body to the codec the header's codec id names (rinr_data.codecs). A codec's reader uses `Reader` so that every count
is checked against the blob's size before anything is allocated.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

from ..errors import FormatError

MAGIC = b"RINR"
FORMAT_VERSION = 1

# magic, version, codec id, flags, height, width, codec float (w0), n_boxes, coder id, reserved
HEADER = struct.Struct("<4sBBHHHfHBB")
LENGTH = struct.Struct("<I")
CRC = struct.Struct("<I")

MAX_SIDE = 16384
MAX_BOXES = 4096
# Decoding allocates per pixel (a grid frame ~150 bytes a pixel in float32 while it renders), and a record of a few
# hundred bytes can declare any size: like Pillow's MAX_IMAGE_PIXELS, frames above this are refused before anything is
# allocated. 4096x4096 covers the cameras this is for; raise it (rinr_data.format.container.MAX_IMAGE_PIXELS = N) for
# trusted records of larger frames.
MAX_IMAGE_PIXELS = 4096 * 4096
# Pixels alone do not bound the work: a 121-byte grid record declaring 4096x4096 pixels through eight 255-wide
# layers parsed fine and needed ~35 GiB to decode. A record's multiply-accumulates (synthesis MACs per pixel times
# the pixels each network covers) are bounded too: 8192 per pixel of the largest frame covers the paper codec's
# 28x10 background SIREN (~7,000 MACs a pixel) and twenty times the default grid synthesis (400).
MAX_DECODE_MACS = MAX_IMAGE_PIXELS * 8192


@dataclass(frozen=True)
class Header:
    """The fixed header every record starts with."""

    codec_id: int
    flags: int
    height: int
    width: int
    w0: float  # a float the codec defines (the paper codec's SIREN frequency; 0 for the grid codec)
    n_boxes: int
    coder: int


def pack_header(codec_id: int, flags: int, height: int, width: int, w0: float, n_boxes: int, coder: int) -> bytes:
    """The fixed header of a record."""
    return HEADER.pack(MAGIC, FORMAT_VERSION, codec_id, flags, height, width, w0, n_boxes, coder, 0)


def seal(body: bytes) -> bytes:
    """A record's bytes: its body followed by the body's CRC-32."""
    return body + CRC.pack(zlib.crc32(body))


class Reader:
    """Bounds-checked cursor over a blob."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = memoryview(data)
        self.pos = pos

    @staticmethod
    def checked_body(blob: bytes) -> bytes:
        """The record without its CRC, after checking the CRC (raises FormatError)."""
        if len(blob) < HEADER.size + CRC.size:
            raise FormatError("record truncated: no checksum")
        body, (crc,) = blob[: -CRC.size], CRC.unpack_from(blob, len(blob) - CRC.size)
        if zlib.crc32(body) != crc:
            raise FormatError("record checksum mismatch: the record is corrupt or truncated")
        return body

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(
                f"record truncated: {what} needs {n} bytes at offset {self.pos}, {len(self.data) - self.pos} left"
            )
        view = self.data[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack(self.take(st.size, what))


def read_header(blob: bytes) -> Header:
    """Magic and version checks plus the fixed header fields (raises FormatError); the codec id is checked by the
    codec registry, which knows the codecs."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise FormatError(f"a record must be bytes, got {type(blob).__name__}")
    if len(blob) < HEADER.size:
        raise FormatError(f"record truncated: {len(blob)} bytes, the header alone is {HEADER.size}")
    magic, version, codec, flags, height, width, w0, n_boxes, coder, _ = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise FormatError(f"not a rinr record: magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported record format version {version}; this rinr_data reads version {FORMAT_VERSION}")
    return Header(codec, flags, height, width, w0, n_boxes, coder)


def check_frame(height: int, width: int, n_boxes: int) -> None:
    """Frame size, pixel count and box count bounds shared by every codec (raises FormatError)."""
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise FormatError(f"image size {width}x{height} out of bounds (1..{MAX_SIDE})")
    if height * width > MAX_IMAGE_PIXELS:
        raise FormatError(
            f"{width}x{height} frame ({height * width} pixels) exceeds MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS}): "
            "refused as a possible decompression bomb; raise rinr_data.format.container.MAX_IMAGE_PIXELS for "
            "trusted records"
        )
    if n_boxes > MAX_BOXES:
        raise FormatError(f"{n_boxes} boxes exceed the limit of {MAX_BOXES}")


def check_box(index: int, box: tuple[float, float, float, float], height: int, width: int) -> None:
    """A stored box must be finite, ordered and inside the frame (raises FormatError)."""
    if not all(math.isfinite(v) for v in box):
        raise FormatError(f"box {index}: non-finite coordinate")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise FormatError(f"box {index}: {list(box)} is not a positive-area box inside {width}x{height}")


def scene_id(blob: bytes) -> str:
    """A scene record's id: derived from its bytes, so a frame can never be decoded against the wrong scene."""
    return "s" + hashlib.sha256(blob).hexdigest()[:15]


def check_decode_cost(macs: int, what: str | Callable[[], str]) -> None:
    """A record's decode work in multiply-accumulates must stay within MAX_DECODE_MACS (raises FormatError); `what`
    names the frame, or builds that name only when it is needed (a loader checks every record it parses)."""
    if macs > MAX_DECODE_MACS:
        what = what if isinstance(what, str) else what()
        raise FormatError(
            f"{what} needs {macs:,} multiply-accumulates to decode, over MAX_DECODE_MACS ({MAX_DECODE_MACS:,}): "
            "refused as a possible decompression bomb; raise rinr_data.format.container.MAX_DECODE_MACS for "
            "trusted records"
        )
