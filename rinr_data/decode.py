"""Grouped decode: parsed records of any codecs are stacked into packed groups, each rendered in one batched call.

Decoding is split in two so a data pipeline can do the CPU half in worker processes: `pack_records` groups parsed
records by codec and stacks them into a `PackedBatch` of CPU tensors (no device work), and `decode_packed` renders
every group on any device and returns the frames in batch order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from . import codecs
from .codecs.base import Packed, Warp, WarpedPacked
from .core.devices import resolve_device
from .core.frames import to_uint8
from .errors import FormatError
from .format.container import scene_id


@dataclass
class PackedBatch:
    """Frames ready for a batched decode: packed groups (each of one codec) whose `members` index the batch."""

    groups: list[Packed]
    frame_sizes: list[tuple[int, int]]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedBatch":
        """Move every group's tensors to `device` (the metadata stays in Python lists)."""
        return PackedBatch([g.to(device, non_blocking) for g in self.groups], self.frame_sizes)

    def pin_memory(self) -> "PackedBatch":
        """Page-locked copy, used by DataLoader(pin_memory=True)."""
        return PackedBatch([g.pin_memory() for g in self.groups], self.frame_sizes)

    def __len__(self) -> int:
        return len(self.frame_sizes)


def pack_records(records: Sequence[Any], scenes: Mapping[str, Any] | None = None) -> PackedBatch:
    """Stack parsed records (or images) for one batched decode, on the CPU (`scenes`: parsed scene records by id)."""
    by_codec: dict[str, list[int]] = defaultdict(list)
    owners = {}
    sizes = []
    for fi, rec in enumerate(records):
        codec = codecs.for_parsed(rec)
        by_codec[codec.name].append(fi)
        owners[codec.name] = codec
        sizes.append(codec.describe(rec).size)
    groups: list[Packed] = []
    for name, frames in by_codec.items():
        for group in owners[name].pack([records[fi] for fi in frames], scenes):
            group.members = [frames[i] for i in group.members]
            groups.append(group)
    return PackedBatch(groups, sizes)


def decode_packed(
    batch: PackedBatch,
    device: str | torch.device = "cpu",
    *,
    as_float: bool = False,
) -> list[torch.Tensor]:
    """Render every group on `device` and return the frames in batch order (uint8, or float in [0, 1])."""
    device = resolve_device(device)
    images: list[torch.Tensor | None] = [None] * len(batch)
    for group in batch.groups:
        for fi, img in zip(group.members, _quantised(group.render(device), as_float)):
            images[fi] = img
    return _complete(images)


def _quantised(frames: Sequence[torch.Tensor], as_float: bool) -> list[torch.Tensor]:
    """Frames rounded to uint8 (`as_float`: the same values divided back to [0, 1], so float consumers see exactly
    the decoded pixels); frames of one size in one pass, a few kernel launches a group rather than a frame."""
    if len({tuple(f.shape) for f in frames}) != 1:
        return [_quantised([f], as_float)[0] for f in frames]
    out = to_uint8(torch.stack(list(frames)))
    return list(out.to(torch.float32).div_(255) if as_float else out)


def _complete(images: list[torch.Tensor | None]) -> list[torch.Tensor]:
    for fi, img in enumerate(images):
        if img is None:
            raise FormatError(f"frame {fi} of the batch belongs to no packed group")
    return images  # type: ignore[return-value]


def decode_packed_warped(
    batch: PackedBatch,
    warps: Sequence[Warp | None],
    device: str | torch.device = "cpu",
    *,
    fill: float = 0.0,
    as_float: bool = False,
) -> tuple[list[torch.Tensor], list[bool]]:
    """Render every group on `device`, frame i through `warps[i]` where its codec can (`WarpedPacked`: only the
    output pixels are synthesised, `fill` outside the frame) and whole where it cannot or the warp is None; the
    flags say which frames were warped. Images in batch order, quantised as `decode_packed` quantises them (uint8,
    or float in [0, 1])."""
    if len(warps) != len(batch):
        raise ValueError(f"{len(warps)} warps for a batch of {len(batch)} frames")
    device = resolve_device(device)
    images: list[torch.Tensor | None] = [None] * len(batch)
    warped = [False] * len(batch)
    for group in batch.groups:
        wanted = [warps[fi] for fi in group.members]
        if isinstance(group, WarpedPacked) and any(w is not None for w in wanted):
            # Frames kept whole take the identity warp, so the group still renders in one call per output size.
            whole = [Warp(batch.frame_sizes[fi]) for fi in group.members]
            rendered = group.render_warped(device, [w or i for w, i in zip(wanted, whole)], fill)
            for fi, w in zip(group.members, wanted):
                warped[fi] = w is not None
        else:
            rendered = group.render(device)
        for fi, img in zip(group.members, _quantised(rendered, as_float)):
            images[fi] = img
    return _complete(images), warped


class SceneTable:
    """Scene records by id, parsed on first use; a missing or corrupt scene fails only the frames that use it."""

    def __init__(self, blobs: dict[str, bytes], where: str = "this shard") -> None:
        self.blobs = blobs
        self.where = where
        self._parsed: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        """The parsed scene `name` (raises FormatError naming it when absent, corrupt or not the named scene)."""
        if name not in self._parsed:
            self._parsed[name] = self._parse(name)
        found = self._parsed[name]
        if isinstance(found, FormatError):
            raise found
        return found

    def _parse(self, name: str) -> Any:
        blob = self.blobs.get(name)
        if blob is None:
            return FormatError(f"record references scene {name!r}, which {self.where} does not hold")
        if scene_id(blob) != name:
            return FormatError(f"scene {name!r} of {self.where}: the bytes given are scene {scene_id(blob)!r}")
        try:
            return codecs.parse(blob)[1]
        except FormatError as exc:
            return FormatError(f"scene {name!r} of {self.where}: {exc}")


def parse_scenes(scenes: dict[str, bytes] | None) -> dict[str, Any]:
    """Parse scene records given by id, checking each id against the bytes it names (raises FormatError)."""
    table = SceneTable(scenes or {}, "the scenes given")
    return {name: table.get(name) for name in table.blobs}


def unpack(blob: bytes) -> Any:
    """Parse and validate a record of any codec (raises FormatError for anything malformed)."""
    return codecs.parse(blob)[1]


def pack(record: Any) -> bytes:
    """Serialise a parsed record of any record codec to bytes (deterministic)."""
    return codecs.for_parsed(record).serialize(record)


def decode_records(
    records: Sequence[Any], device: str | torch.device = "cpu", scenes: Mapping[str, Any] | None = None
) -> list[torch.Tensor]:
    """Decode parsed records to uint8 [3, H, W] images on `device`, grouped by codec and shape."""
    return decode_packed(pack_records(records, scenes), device)


def decode_batch(
    blobs: Sequence[bytes], device: str | torch.device = "cpu", scenes: dict[str, bytes] | None = None
) -> list[torch.Tensor]:
    """Decode many records at once (one batched call per shape group), resolving scene references in `scenes`."""
    return decode_records([unpack(b) for b in blobs], device, parse_scenes(scenes))


def decode(blob: bytes, device: str | torch.device = "cpu", scenes: dict[str, bytes] | None = None) -> torch.Tensor:
    """Decode one record to a uint8 [3, H, W] image (`scenes`: scene records by id, for scene-mode frames)."""
    return decode_batch([blob], device, scenes)[0]
