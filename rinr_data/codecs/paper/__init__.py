"""The paper codec: Residual-INR (arXiv 2408.05617) as published, a background SIREN plus one SIREN per box residual.

Rooms: `siren` (batched SIRENs), `weights` (their quantised weights), `fitting`, `record` (the bitstream),
`packing` (batched render and compositing), `encoder`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..base import EncodedFrame, FrameInfo, Packed
from . import encoder, packing, record
from .config import PAPER_BACKGROUND, PAPER_OBJECT_CLASSES, ObjectSizeClass, PaperConfig
from .record import ObjectEntry, Record
from .siren import SirenShape


def _shape(inr: Any) -> str:
    return f"{inr.shape.width}x{inr.shape.depth}"


class PaperCodec:
    """The residual-SIREN codec behind the Codec interface."""

    name = "paper"
    wire_id = record.CODEC_ID
    wire_name = record.CODEC  # the name FORMAT.md gives the wire id
    member = "rinr"
    parsed_type = Record
    config_class = PaperConfig
    supports_scenes = False

    def encode(
        self, images: Sequence[Any], boxes_list: Sequence[Any], config: PaperConfig, progress: bool = False
    ) -> list[EncodedFrame]:
        """Background SIRENs, then object SIRENs, each shape fitted in one stacked call."""
        return encoder.encode_frames(images, boxes_list, config, progress)

    def parse(self, blob: bytes) -> Record:
        """A parsed residual-SIREN record (raises FormatError)."""
        return record.unpack(blob)

    def describe(self, parsed: Record) -> FrameInfo:
        """Size, boxes and SIREN shapes (width x depth) of a record."""
        return FrameInfo(
            (parsed.height, parsed.width),
            list(parsed.boxes),
            None,
            _shape(parsed.background),
            tuple(_shape(o.inr) for o in parsed.objects),
        )

    def serialize(self, parsed: Record) -> bytes:
        """A parsed record back to bytes (deterministic)."""
        return record.pack(parsed)

    def pack(self, parsed: Sequence[Record], scenes: Mapping[str, Any] | None = None) -> list[Packed]:
        """The records' INRs stacked by shape."""
        return list(packing.pack(parsed, scenes))


CODEC = PaperCodec()

__all__ = [
    "CODEC",
    "PAPER_BACKGROUND",
    "PAPER_OBJECT_CLASSES",
    "ObjectEntry",
    "ObjectSizeClass",
    "PaperCodec",
    "PaperConfig",
    "Record",
    "SirenShape",
]
