"""Residual-SIREN records stacked for a batched render: INRs grouped by shape, composited into frames.

A packed batch can be split into one-frame packings (its background and box INRs) and merged back into the packing
`pack` builds for those frames, so a held frame renders in the same batched calls.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ...core.frames import box_region
from .record import Record
from .siren import Params, SirenShape, render
from .weights import QuantizedINR, stack_params


@dataclass
class PackedGroup:
    """INRs of one shape and w0, stacked: `members` are indices into the batch's INR list."""

    shape: SirenShape
    w0: float
    params: Params
    members: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedGroup":
        """Move the stacked weights; membership stays on the host."""
        params = [
            (w.to(device, non_blocking=non_blocking), b.to(device, non_blocking=non_blocking)) for w, b in self.params
        ]
        return PackedGroup(self.shape, self.w0, params, self.members)

    def pin_memory(self) -> "PackedGroup":
        """Page-locked copy for asynchronous host-to-GPU transfer."""
        return PackedGroup(
            self.shape, self.w0, [(w.pin_memory(), b.pin_memory()) for w, b in self.params], self.members
        )


@dataclass
class PackedSirens:
    """Residual-SIREN frames ready for a batched render: stacked INRs per shape group plus how to composite them.

    INR `i` belongs to frame `frame_of[i]` (an index into `members`); it is the background when `q[i] == 0`, else the
    residual of the box covering pixel rows/columns `regions[i]` = (top, left, bottom, right), scaled by `q[i]`.
    """

    groups: list[PackedGroup]
    frame_sizes: list[tuple[int, int]]
    frame_of: list[int]
    regions: list[tuple[int, int, int, int]]
    q: list[float]
    members: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedSirens":
        """Move the weights to `device` (the metadata stays in Python lists)."""
        return PackedSirens(
            [g.to(device, non_blocking) for g in self.groups],
            self.frame_sizes,
            self.frame_of,
            self.regions,
            self.q,
            self.members,
        )

    def pin_memory(self) -> "PackedSirens":
        """Page-locked copy, used by DataLoader(pin_memory=True)."""
        return PackedSirens(
            [g.pin_memory() for g in self.groups], self.frame_sizes, self.frame_of, self.regions, self.q, self.members
        )

    def render_inrs(self, device: torch.device) -> list[torch.Tensor]:
        """One batched forward per group on `device`: the [h*w, 3] output of every INR, in INR order."""
        moved = self.to(device, non_blocking=True)
        rendered: list[torch.Tensor | None] = [None] * len(self.q)
        for group in moved.groups:
            sizes = [
                (self.regions[i][2] - self.regions[i][0], self.regions[i][3] - self.regions[i][1])
                for i in group.members
            ]
            for i, out in zip(group.members, render(group.params, sizes, group.w0)):
                rendered[i] = out
        return rendered  # type: ignore[return-value]

    def render(self, device: torch.device) -> list[torch.Tensor]:
        """Float [3, H, W] frames: backgrounds, then each box's scaled residual pasted over its region."""
        rendered = self.render_inrs(device)
        backgrounds: dict[int, torch.Tensor] = {}
        for i, out in enumerate(rendered):
            if self.q[i] == 0.0:
                h, w = self.frame_sizes[self.frame_of[i]]
                backgrounds[self.frame_of[i]] = out.clamp(0, 1).T.reshape(3, h, w)
        canvases = {fi: bg.clone() for fi, bg in backgrounds.items()}
        # Boxes are pasted in record order, so where boxes overlap the later one wins, as at encode time;
        # each residual is relative to the background, not to earlier boxes.
        for i, out in enumerate(rendered):
            if self.q[i] == 0.0:
                continue
            fi, (top, left, bottom, right) = self.frame_of[i], self.regions[i]
            residual = out.T.reshape(3, bottom - top, right - left)
            crop = backgrounds[fi][:, top:bottom, left:right]
            canvases[fi][:, top:bottom, left:right] = (crop + self.q[i] * residual).clamp(0, 1)
        return [canvases[fi] for fi in range(len(self.members))]

    def split(self) -> list["PackedSirens"]:
        """One packing per frame (`members` [m]) with its own INRs, owning its storage."""
        out = []
        for fi, member in enumerate(self.members):
            mine = [i for i, f in enumerate(self.frame_of) if f == fi]
            local = {i: li for li, i in enumerate(mine)}
            groups = []
            for group in self.groups:
                at = [p for p, i in enumerate(group.members) if i in local]
                if not at:
                    continue
                index = torch.tensor(at, dtype=torch.long, device=group.params[0][0].device)
                params = [(w.index_select(0, index), b.index_select(0, index)) for w, b in group.params]
                groups.append(PackedGroup(group.shape, group.w0, params, [local[group.members[p]] for p in at]))
            out.append(
                PackedSirens(
                    groups,
                    [self.frame_sizes[fi]],
                    [0] * len(mine),
                    [self.regions[i] for i in mine],
                    [self.q[i] for i in mine],
                    [member],
                )
            )
        return out

    @classmethod
    def merge(cls, frames: Sequence["PackedSirens"]) -> list["PackedSirens"]:
        """One-frame packings (as `split` gives) as the one packing `pack` builds for their frames; members index
        `frames`."""
        by_key: dict[tuple[SirenShape, float], list[tuple[Params, list[int]]]] = defaultdict(list)
        frame_of: list[int] = []
        regions: list[tuple[int, int, int, int]] = []
        q: list[float] = []
        for fi, frame in enumerate(frames):
            if len(frame.members) != 1:
                raise ValueError(f"merge takes one-frame packings, got one of {len(frame.members)} frames")
            offset = len(q)
            for group in frame.groups:
                by_key[(group.shape, group.w0)].append((group.params, [offset + i for i in group.members]))
            frame_of += [fi] * len(frame.q)
            regions += frame.regions
            q += frame.q
        if not frames:
            return []
        groups = [
            PackedGroup(
                shape,
                w0,
                [
                    (torch.cat([p[layer][0] for p, _ in parts]), torch.cat([p[layer][1] for p, _ in parts]))
                    for layer in range(len(parts[0][0]))
                ],
                [i for _, members in parts for i in members],
            )
            for (shape, w0), parts in sorted(by_key.items(), key=lambda kv: kv[0])
        ]
        sizes = [f.frame_sizes[0] for f in frames]
        return [PackedSirens(groups, sizes, frame_of, regions, q, list(range(len(frames))))]


def pack(records: Sequence[Record], scenes: Mapping[str, object] | None = None) -> list[PackedSirens]:
    """Dequantise and stack the INRs of records by shape, on the CPU (the paper codec has no scenes)."""
    inrs: list[QuantizedINR] = []
    w0s: list[float] = []
    frame_of, regions, q = [], [], []
    for fi, rec in enumerate(records):
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
    if not records:
        return []
    by_key: dict[tuple[SirenShape, float], list[int]] = defaultdict(list)
    for i, (inr, w0) in enumerate(zip(inrs, w0s)):
        by_key[(inr.shape, w0)].append(i)
    groups = [
        PackedGroup(shape, w0, stack_params([inrs[i] for i in members]), members)
        for (shape, w0), members in sorted(by_key.items())
    ]
    return [
        PackedSirens(groups, [(r.height, r.width) for r in records], frame_of, regions, q, list(range(len(records))))
    ]


def backgrounds(records: Sequence[Record], device: torch.device) -> list[torch.Tensor]:
    """Float [3, H, W] background reconstructions in [0, 1] (what object residuals are measured against)."""
    bare = [Record(r.height, r.width, r.w0, r.background, [], r.coder, r.codec) for r in records]
    rendered = pack(bare)[0].render_inrs(device)
    return [x.clamp(0, 1).T.reshape(3, r.height, r.width) for x, r in zip(rendered, records)]
