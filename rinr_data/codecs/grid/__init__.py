"""The latent-grid codec (default): multi-resolution latent grids and a tiny synthesis MLP, entropy-coded.

Rooms: `model` (grids, upsampling, synthesis), `context` (the latents' context model), `fit` (rate-constrained
fitting), `warm` (where a dataset's fits start), `record` (the bitstream), `packing` (batched render), `encoder`
(per-frame and scene-mode encoding).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..base import EncodedFrame, FrameInfo, Packed
from . import encoder, packing, record, warm
from .config import DEFAULT_GRID, GridConfig, SceneConfig
from .model import GridShape
from .record import GridRecord
from .warm import WarmStart


class GridCodec:
    """The latent-grid codec behind the Codec interface; it also encodes sequences in scene mode."""

    name = "grid"
    wire_id = record.CODEC_ID
    wire_name = record.CODEC  # the name FORMAT.md gives the wire id
    member = "rinr"
    parsed_type = GridRecord
    config_class = GridConfig
    supports_scenes = True

    def encode(
        self, images: Sequence[Any], boxes_list: Sequence[Any], config: GridConfig, progress: bool = False
    ) -> list[EncodedFrame]:
        """Self-contained records, all frames fitted in one stacked call."""
        return encoder.encode_frames(images, boxes_list, config, progress)

    def encode_sequence(
        self, images: Sequence[Any], boxes_list: Sequence[Any], config: GridConfig, progress: bool = False
    ) -> tuple[dict[str, bytes], list[EncodedFrame]]:
        """Scene mode: scene records by id and one record per frame (see encoder.encode_sequence)."""
        return encoder.encode_sequence_frames(images, boxes_list, config, progress)

    def learn_warm_start(
        self, images: Sequence[Any], boxes_list: Sequence[Any], config: GridConfig, progress: bool = False
    ) -> WarmStart:
        """Where the fits of a dataset's frames start, learned on a sample of them (see `warm`)."""
        return encoder.learn_warm_start(images, boxes_list, config, progress)

    def read_warm_start(self, path: str | Path, config: GridConfig, meta: dict[str, Any]) -> WarmStart | None:
        """The warm start saved at `path`, or None when it is damaged or was learned from other data or settings
        than `meta` (JSON-able) says."""
        try:
            start, saved = warm.read(path, config.grid)
        except (OSError, ValueError):
            return None
        saved.pop("version", None)
        return start if saved == json.loads(json.dumps(meta)) else None

    def write_warm_start(self, path: str | Path, start: WarmStart, meta: dict[str, Any]) -> None:
        """Save a warm start with `meta` (what it was learned from) for `read_warm_start`."""
        warm.write(path, start, meta)

    def parse(self, blob: bytes) -> GridRecord:
        """A parsed latent-grid record (raises FormatError)."""
        return record.unpack(blob)

    def describe(self, parsed: GridRecord) -> FrameInfo:
        """Size, boxes, scene reference and grid shape of a record."""
        shape = parsed.shape
        model = f"grid {shape.levels} levels ({shape.box_levels} box-only), mlp {'-'.join(map(str, shape.hidden))}"
        return FrameInfo((parsed.height, parsed.width), list(parsed.boxes), parsed.scene, model)

    def byte_budget(self, parsed: GridRecord) -> dict[str, float]:
        """Where a record's bytes go (latents in and outside boxes, synthesis, the rest)."""
        return record.byte_budget(parsed)

    def serialize(self, parsed: GridRecord) -> bytes:
        """A parsed record back to bytes (deterministic)."""
        return record.pack(parsed)

    def pack(self, parsed: Sequence[GridRecord], scenes: Mapping[str, GridRecord] | None = None) -> list[Packed]:
        """Records stacked by size and shape, their scenes added in."""
        return list(packing.pack(parsed, scenes))


CODEC = GridCodec()

__all__ = ["CODEC", "DEFAULT_GRID", "GridCodec", "GridConfig", "GridRecord", "GridShape", "SceneConfig", "WarmStart"]
