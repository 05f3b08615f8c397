"""The codec interface every codec implements, and what codecs share: fitted-codec settings and encode results.

A codec turns frames into records (bytes), parses a record into CPU tensors, and stacks parsed records into packed
groups that render on any device in one batched call. The registry (rinr_data.codecs) maps names, record wire ids
and shard member kinds to codecs; nothing else in the library asks which codec it holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from ..core.frames import clip_boxes, to_chw_uint8, to_uint8
from ..core.jsonable import jsonable
from ..core.metrics import region_psnr


@runtime_checkable
class Packed(Protocol):
    """Parsed records of one codec stacked for one batched render; `members` are frame indices in the batch."""

    members: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Packed":
        """The same group with its tensors on `device`."""
        ...

    def pin_memory(self) -> "Packed":
        """Page-locked copy for asynchronous host-to-GPU transfer."""
        ...

    def render(self, device: torch.device) -> list[torch.Tensor]:
        """Float [3, H, W] images of the members in `members` order, computed on `device` (values may leave [0, 1])."""
        ...


@dataclass(frozen=True)
class Warp:
    """An axis-aligned resampling of a frame (scale, shift, mirror), for rendering only the pixels it keeps.

    Coordinates are in pixels with pixel edges at integers: a frame of H x W spans [0, H] x [0, W]. Output pixel
    (i, j) of the `size` (H', W') result shows the source point (scale[0] * (i + 0.5) + offset[0],
    scale[1] * (j + 0.5) + offset[1]); a negative scale mirrors that axis. Output pixels whose point lies outside the
    source frame show the render's fill value.
    """

    size: tuple[int, int]
    scale: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)

    def points(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Source rows [H'] and columns [W'] (float64) of the output pixel centres."""
        axes = []
        for n, scale, offset in zip(self.size, self.scale, self.offset):
            centres = torch.arange(n, device=device, dtype=torch.float64) + 0.5
            axes.append(centres * scale + offset)
        return axes[0], axes[1]

    def pixels(self, frame: tuple[int, int]) -> int:
        """How many output pixels show a point of an H x W `frame`: what a warped render synthesises."""
        rows, cols = self.points()
        return int(((rows >= 0) & (rows <= frame[0])).sum()) * int(((cols >= 0) & (cols <= frame[1])).sum())


@runtime_checkable
class WarpedPacked(Packed, Protocol):
    """A packed group that can render its frames through a `Warp` each, synthesising only the output pixels.

    Optional: the decode asks `isinstance(group, WarpedPacked)`; codecs without it (paper, classic) decode the full
    frame and leave resampling to the caller.
    """

    def render_warped(self, device: torch.device, warps: Sequence[Warp], fill: float) -> list[torch.Tensor]:
        """Float [3, H', W'] images of the members through `warps` (in `members` order), `fill` outside the frame."""
        ...


class Codec(Protocol):
    """What a codec provides; see docs/ARCHITECTURE.md for how to add one."""

    name: str  # the name users pick it by (--preset / --codec)
    wire_id: int | None  # codec id in the record header; None for codecs whose members are not rinr records
    member: str  # the kind of shard member it is stored as: "rinr" for records, else the image format
    config_class: type
    parsed_type: type | tuple[type, ...]  # what `parse` returns

    def encode(
        self, images: Sequence[Any], boxes_list: Sequence[Any], config: Any, progress: bool = False
    ) -> list["EncodedFrame"]:
        """Encode frames together and report what each encoded frame achieves as decoded."""
        ...

    def parse(self, blob: bytes) -> Any:
        """A member's bytes parsed into CPU data (raises FormatError for anything malformed)."""
        ...

    def describe(self, parsed: Any) -> "FrameInfo":
        """Frame size, stored box count and scene reference of a parsed member (checked against its JSON)."""
        ...

    def pack(self, parsed: Sequence[Any], scenes: Mapping[str, Any] | None = None) -> list[Packed]:
        """Parsed members stacked into packed groups (members index `parsed`); `scenes` resolves scene references."""
        ...


@dataclass(frozen=True)
class FrameInfo:
    """What a parsed member says of its frame: (H, W), the boxes it stores (None: none stored), its scene."""

    size: tuple[int, int]
    boxes: list[tuple[float, float, float, float]] | None = None
    scene: str | None = None
    model: str | None = None  # the INR shape(s) it decodes with, for rinr-inspect
    objects: tuple[str, ...] = ()  # per-box model shapes, where boxes have models of their own


@dataclass(frozen=True)
class FittedConfig:
    """Settings every fitted (INR) codec has; a codec's config subclasses it with its own defaults and fields.

    Args:
        object_psnr: PSNR (dB) the boxes must reach.
        background_psnr: PSNR (dB) outside the boxes.
        max_steps: step budget of each fit.
        seed: seeds initialisation and sampling; the same seed gives the same bytes on one machine.
        device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available).
        lr: Adam learning rate (of the weights) at the start of the cosine schedule.
        weight_bits: bits of the quantised weights.
    """

    preset: ClassVar[str] = ""  # the codec name this config belongs to
    object_psnr: float = 33.0
    background_psnr: float = 25.0
    max_steps: int = 1500
    seed: int = 0
    device: str = "cpu"
    lr: float = 0.03
    weight_bits: int = 8

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not 2 <= self.weight_bits <= 16:
            raise ValueError(f"weight_bits must be in 2..16, got {self.weight_bits}")

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def settings(self) -> dict[str, Any]:
        """What decides the bytes (the manifest's codec_config; resumed runs must match it): all but the device."""
        out = {"preset": self.preset, **jsonable(self)}
        out.pop("device")
        return out


@dataclass
class EncodedFrame:
    """An encoded frame plus what it achieves: PSNR (dB) over the whole frame, pooled over the boxes and outside."""

    blob: bytes
    boxes: np.ndarray  # clipped xyxy boxes as stored
    full_psnr: float
    object_psnr: float
    background_psnr: float
    steps: dict[str, int]
    scene: str | None = None  # scene mode: the id of the scene record this frame's record builds on


def prepare_frames(images: Sequence[Any], boxes_list: Sequence[Any]) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """Frames as uint8 [3, H, W] and their boxes clipped to them (raises for mismatched or bad input)."""
    if len(images) != len(boxes_list):
        raise ValueError(f"{len(images)} images but {len(boxes_list)} box lists")
    frames = [to_chw_uint8(img) for img in images]
    return frames, [clip_boxes(b, f.shape[1], f.shape[2]) for f, b in zip(frames, boxes_list)]


Parse = Callable[[bytes], Any]
Pack = Callable[[Sequence[Any], Optional[Mapping[str, Any]]], list[Packed]]


def render_parsed(
    pack: Pack, parsed: Sequence[Any], device: torch.device, scenes: Mapping[str, Any] | None = None
) -> list[torch.Tensor]:
    """uint8 [3, H, W] images of parsed members of one codec (its `pack`), rendered on `device` in packed groups."""
    images: list[torch.Tensor | None] = [None] * len(parsed)
    for group in pack(parsed, scenes):
        for fi, img in zip(group.members, group.render(device)):
            images[fi] = to_uint8(img)
    return images  # type: ignore[return-value]


def measure(
    parse: Parse,
    pack: Pack,
    blobs: Sequence[bytes],
    frames: Sequence[torch.Tensor],
    boxes: Sequence[np.ndarray],
    device: torch.device,
    steps: Sequence[dict[str, int]],
    scenes: Mapping[str, Any] | None = None,
) -> list[EncodedFrame]:
    """What each encoded frame achieves as shipped: parse the bytes back, render them, measure PSNR."""
    parsed = [parse(b) for b in blobs]
    decoded = render_parsed(pack, parsed, device, scenes)
    result = []
    for blob, rec, f, b, img, st in zip(blobs, parsed, frames, boxes, decoded, steps):
        q = region_psnr(f, img.cpu(), b)
        result.append(EncodedFrame(blob, b, q.full, q.objects, q.background, st, getattr(rec, "scene", None)))
    return result
