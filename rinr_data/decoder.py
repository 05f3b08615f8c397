"""Grouped decode: the INRs of many records are grouped by shape, each group runs as one batched forward.

Decoding is split in two so a data pipeline can do the CPU half in worker processes: `pack_records` parses and
dequantises records into a `PackedBatch` of stacked CPU tensors (no device work), and `decode_packed` runs the
batched forwards and compositing on any device.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import torch

from . import record as record_format
from .devices import resolve_device
from .frames import box_region
from .grid import GridShape, Layers
from .grid import render as render_grid
from .grid_record import GridRecord, SceneTable, resolve
from .quantize import QuantizedINR, stack_params
from .siren import Params, SirenShape, render

AnyRecord = record_format.Record | GridRecord


@dataclass
class PackedGroup:
    """INRs of one shape and w0, stacked: `members` are indices into the batch's INR list."""

    shape: SirenShape
    w0: float
    params: Params
    members: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedGroup":
        """Move the stacked weights; membership stays on the host."""
        params = [(w.to(device, non_blocking=non_blocking), b.to(device, non_blocking=non_blocking))
                  for w, b in self.params]
        return PackedGroup(self.shape, self.w0, params, self.members)

    def pin_memory(self) -> "PackedGroup":
        """Page-locked copy for asynchronous host-to-GPU transfer."""
        return PackedGroup(self.shape, self.w0, [(w.pin_memory(), b.pin_memory()) for w, b in self.params],
                           self.members)


@dataclass
class PackedGrids:
    """Latent-grid frames of one size and shape, stacked: `members` are frame indices in the batch."""

    shape: GridShape
    height: int
    width: int
    latents: list[torch.Tensor]  # per level [B, 1, h_l, w_l]
    layers: Layers
    members: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedGrids":
        """Move latents and synthesis; membership stays on the host."""
        return PackedGrids(self.shape, self.height, self.width,
                           [t.to(device, non_blocking=non_blocking) for t in self.latents],
                           [(w.to(device, non_blocking=non_blocking), b.to(device, non_blocking=non_blocking))
                            for w, b in self.layers], self.members)

    def pin_memory(self) -> "PackedGrids":
        """Page-locked copy for asynchronous host-to-GPU transfer."""
        return PackedGrids(self.shape, self.height, self.width, [t.pin_memory() for t in self.latents],
                           [(w.pin_memory(), b.pin_memory()) for w, b in self.layers], self.members)


@dataclass
class PackedBatch:
    """Records ready for a batched decode: stacked weights per shape group plus how to composite them.

    SIREN INR `i` belongs to frame `frame_of[i]`; it is the background when `q[i] == 0`, else the residual of the
    box covering pixel rows/columns `regions[i]` = (top, left, bottom, right), scaled by `q[i]`. Latent-grid frames
    are in `grids` instead.
    """

    groups: list[PackedGroup]
    frame_sizes: list[tuple[int, int]]
    frame_of: list[int]
    regions: list[tuple[int, int, int, int]]
    q: list[float]
    grids: list[PackedGrids] = field(default_factory=list)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedBatch":
        """Move the weights to `device` (the metadata stays in Python lists)."""
        return PackedBatch([g.to(device, non_blocking) for g in self.groups], self.frame_sizes, self.frame_of,
                           self.regions, self.q, [g.to(device, non_blocking) for g in self.grids])

    def pin_memory(self) -> "PackedBatch":
        """Page-locked copy, used by DataLoader(pin_memory=True)."""
        return PackedBatch([g.pin_memory() for g in self.groups], self.frame_sizes, self.frame_of,
                           self.regions, self.q, [g.pin_memory() for g in self.grids])

    def __len__(self) -> int:
        return len(self.frame_sizes)


def pack_records(records: Sequence[AnyRecord], scenes: dict[str, GridRecord] | None = None) -> PackedBatch:
    """Dequantise and stack the INRs of records by shape, on the CPU (`scenes`: parsed scene records by id)."""
    inrs: list[QuantizedINR] = []
    w0s, frame_of, regions, q = [], [], [], []
    grid_members: dict[tuple[int, int, GridShape], list[int]] = defaultdict(list)
    grid_parts: dict[int, tuple[list[torch.Tensor], Layers]] = {}
    for fi, rec in enumerate(records):
        if isinstance(rec, GridRecord):
            # Box-only levels only say where latents were coded: frames that differ in them decode together.
            grid_members[(rec.height, rec.width, rec.shape.dense)].append(fi)
            grid_parts[fi] = resolve(rec, scenes)
            continue
        inrs.append(rec.background)
        w0s.append(rec.w0)
        frame_of.append(fi)
        regions.append((0, 0, rec.height, rec.width))
        q.append(0.0)
        for obj in rec.objects:
            reg = box_region(obj.box, rec.height, rec.width)
            inrs.append(obj.inr)
            w0s.append(rec.w0)
            frame_of.append(fi)
            regions.append((reg.top, reg.left, reg.bottom, reg.right))
            q.append(float(obj.q))
    by_key: dict[tuple[SirenShape, float], list[int]] = defaultdict(list)
    for i, (inr, w0) in enumerate(zip(inrs, w0s)):
        by_key[(inr.shape, w0)].append(i)
    groups = [PackedGroup(shape, w0, stack_params([inrs[i] for i in members]), members)
              for (shape, w0), members in sorted(by_key.items())]
    grids = []
    for (h, w, shape), members in sorted(grid_members.items()):
        parts = [grid_parts[fi] for fi in members]
        latents = [torch.stack([p[0][lv] for p in parts]) for lv in range(shape.levels)]
        layers = [(torch.cat([p[1][i][0] for p in parts]), torch.cat([p[1][i][1] for p in parts]))
                  for i in range(len(shape.layer_dims()))]
        grids.append(PackedGrids(shape, h, w, latents, layers, members))
    return PackedBatch(groups, [(r.height, r.width) for r in records], frame_of, regions, q, grids)


def decode_packed(batch: PackedBatch, device: str | torch.device = "cpu", *, as_float: bool = False,
                  ) -> list[torch.Tensor]:
    """Run every group's batched forward on `device` and composite the frames (uint8, or float in [0, 1])."""
    device = resolve_device(device)
    rendered = _render_groups(batch, device)
    backgrounds: dict[int, torch.Tensor] = {}
    for i, out in enumerate(rendered):
        if batch.q[i] == 0.0:
            h, w = batch.frame_sizes[batch.frame_of[i]]
            backgrounds[batch.frame_of[i]] = out.clamp(0, 1).T.reshape(3, h, w)
    canvases = {fi: bg.clone() for fi, bg in backgrounds.items()}
    # Boxes are pasted in record order, so where boxes overlap the later one wins, as at encode time;
    # each residual is relative to the background, not to earlier boxes.
    for i, out in enumerate(rendered):
        if batch.q[i] == 0.0:
            continue
        fi, (top, left, bottom, right) = batch.frame_of[i], batch.regions[i]
        residual = out.T.reshape(3, bottom - top, right - left)
        crop = backgrounds[fi][:, top:bottom, left:right]
        canvases[fi][:, top:bottom, left:right] = (crop + batch.q[i] * residual).clamp(0, 1)
    for grid in batch.grids:
        grid = grid.to(device, non_blocking=True)
        out = render_grid(grid.layers, grid.latents, grid.height, grid.width)
        for fi, img in zip(grid.members, out):
            canvases[fi] = img
    images = [canvases[fi] for fi in range(len(batch))]
    if as_float:
        # Same values a uint8 decode would give, divided back: float consumers see exactly the decoded pixels.
        return [to_uint8(img).to(torch.float32).div_(255) for img in images]
    return [to_uint8(img) for img in images]


def _render_groups(batch: PackedBatch, device: torch.device) -> list[torch.Tensor]:
    """One batched forward per group on `device`; the [h*w, 3] output of every INR, in the batch's INR order."""
    batch = batch.to(device, non_blocking=True)
    rendered: list[torch.Tensor | None] = [None] * len(batch.q)
    for group in batch.groups:
        sizes = [(batch.regions[i][2] - batch.regions[i][0], batch.regions[i][3] - batch.regions[i][1])
                 for i in group.members]
        for i, out in zip(group.members, render(group.params, sizes, group.w0)):
            rendered[i] = out
    return rendered  # type: ignore[return-value]


def backgrounds(records: Sequence[record_format.Record], device: torch.device) -> list[torch.Tensor]:
    """Float [3, H, W] background reconstructions in [0, 1] (what object residuals are measured against)."""
    bare = [record_format.Record(r.height, r.width, r.w0, r.background, [], r.coder, r.codec) for r in records]
    rendered = _render_groups(pack_records(bare), device)
    return [x.clamp(0, 1).T.reshape(3, r.height, r.width) for x, r in zip(rendered, records)]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Float image in [0, 1] to uint8 with round-half-even, the same on every device."""
    return torch.round(image.clamp(0, 1) * 255).to(torch.uint8)


def parse_scenes(scenes: dict[str, bytes] | None) -> dict[str, GridRecord]:
    """Parse scene records given by id, checking each id against the bytes it names (raises FormatError)."""
    table = SceneTable(scenes or {}, "the scenes given")
    return {name: table.get(name) for name in table.blobs}


def decode_records(records: Sequence[AnyRecord], device: str | torch.device = "cpu",
                   scenes: dict[str, GridRecord] | None = None) -> list[torch.Tensor]:
    """Decode parsed records to uint8 [3, H, W] images on `device`, grouping all their INRs by shape."""
    return decode_packed(pack_records(records, scenes), device)


def decode_batch(blobs: Sequence[bytes], device: str | torch.device = "cpu",
                 scenes: dict[str, bytes] | None = None) -> list[torch.Tensor]:
    """Decode many records at once (one batched forward per shape), resolving scene references in `scenes`."""
    return decode_records([record_format.unpack(b) for b in blobs], device, parse_scenes(scenes))


def decode(blob: bytes, device: str | torch.device = "cpu", scenes: dict[str, bytes] | None = None) -> torch.Tensor:
    """Decode one record to a uint8 [3, H, W] image (`scenes`: scene records by id, for scene-mode frames)."""
    return decode_batch([blob], device, scenes)[0]
