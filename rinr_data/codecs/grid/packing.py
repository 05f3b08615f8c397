"""Latent-grid records stacked for a batched render: frames of one size and grid shape share one call.

A group can be split into one-frame groups, held compactly (latents as the integers they are, in the smallest
integer type that holds them), and merged back: frames of one size and shape again make one batched render.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ...format import entropy
from ..base import Warp
from .model import GridShape, Layers, render, render_warped
from .record import GridRecord, resolved, stacked_layers, stacked_levels


@dataclass
class PackedGrids:
    """Latent-grid frames of one size and shape, stacked: `members` are frame indices in the batch."""

    shape: GridShape
    height: int
    width: int
    latents: list[torch.Tensor]  # per level [B, 1, h_l, w_l]: float32, or integers (split groups) cast at render
    layers: Layers
    members: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedGrids":
        """Move latents and synthesis; membership stays on the host."""
        return PackedGrids(
            self.shape,
            self.height,
            self.width,
            [t.to(device, non_blocking=non_blocking) for t in self.latents],
            [
                (w.to(device, non_blocking=non_blocking), b.to(device, non_blocking=non_blocking))
                for w, b in self.layers
            ],
            self.members,
        )

    def pin_memory(self) -> "PackedGrids":
        """Page-locked copy for asynchronous host-to-GPU transfer."""
        return PackedGrids(
            self.shape,
            self.height,
            self.width,
            [t.pin_memory() for t in self.latents],
            [(w.pin_memory(), b.pin_memory()) for w, b in self.layers],
            self.members,
        )

    def render(self, device: torch.device) -> list[torch.Tensor]:
        """Float [3, H, W] frames, one batched upsampling and synthesis for the whole group."""
        group = self.to(device, non_blocking=True)
        # Integer latents cast to exactly the float32 values an unsplit group carries: the render is bit-identical.
        latents = [t if t.is_floating_point() else t.to(torch.float32) for t in group.latents]
        return list(render(group.layers, latents, self.height, self.width))

    def render_warped(self, device: torch.device, warps: Sequence[Warp], fill: float) -> list[torch.Tensor]:
        """Float [3, H', W'] frames through one `Warp` each (in `members` order): only the output pixels inside the
        frame are synthesised, the others are `fill`; one batched call per output size."""
        if len(warps) != len(self.members):
            raise ValueError(f"{len(warps)} warps for a group of {len(self.members)} frames")
        group = self.to(device, non_blocking=True)
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, warp in enumerate(warps):
            by_size[warp.size].append(i)
        out: list[torch.Tensor] = [torch.empty(0)] * len(warps)
        for indices in by_size.values():
            part = group if len(indices) == len(warps) else group._take(indices)
            points = [warps[i].points(device) for i in indices]
            images = render_warped(
                part.layers,
                [t if t.is_floating_point() else t.to(torch.float32) for t in part.latents],
                self.height,
                self.width,
                torch.stack([p[0] for p in points]),
                torch.stack([p[1] for p in points]),
                fill,
            )
            for i, image in zip(indices, images):
                out[i] = image
        return out

    def _take(self, indices: list[int]) -> "PackedGrids":
        """The frames at `indices` (positions in this group) as a group of their own."""
        pick = torch.tensor(indices, device=self.latents[0].device)
        return PackedGrids(
            self.shape,
            self.height,
            self.width,
            [t.index_select(0, pick) for t in self.latents],
            [(w.index_select(0, pick), b.index_select(0, pick)) for w, b in self.layers],
            [self.members[i] for i in indices],
        )

    def split(self) -> list["PackedGrids"]:
        """One group per member (`members` [m]), owning its storage, latents compact where they are integers."""
        return [
            PackedGrids(
                self.shape,
                self.height,
                self.width,
                [_compact(t[i : i + 1]) for t in self.latents],
                [(w[i : i + 1].clone(), b[i : i + 1].clone()) for w, b in self.layers],
                [m],
            )
            for i, m in enumerate(self.members)
        ]

    @classmethod
    def merge(cls, frames: Sequence["PackedGrids"]) -> list["PackedGrids"]:
        """One-frame groups (as `split` gives) stacked by (size, shape) as `pack` stacks them; members index
        `frames`."""
        by_key: dict[tuple[int, int, GridShape], list[int]] = defaultdict(list)
        for fi, frame in enumerate(frames):
            if len(frame.members) != 1:
                raise ValueError(f"merge takes one-frame groups, got one of {len(frame.members)} frames")
            by_key[(frame.height, frame.width, frame.shape)].append(fi)
        groups = []
        for (h, w, shape), members in sorted(by_key.items()):
            parts = [frames[fi] for fi in members]
            # torch.cat promotes to the widest of the parts' dtypes (frames compact to different integer types)
            # within its one call: a replayed batch costs a call per tensor, not one per frame and tensor.
            latents = [torch.cat([p.latents[lv] for p in parts]) for lv in range(shape.levels)]
            layers = [
                (torch.cat([p.layers[i][0] for p in parts]), torch.cat([p.layers[i][1] for p in parts]))
                for i in range(len(shape.layer_dims()))
            ]
            groups.append(PackedGrids(shape, h, w, latents, layers, members))
        return groups


def _compact(latents: torch.Tensor) -> torch.Tensor:
    """Integer-valued float latents in `entropy.int_type`'s integer type for them (a fresh tensor either way)."""
    if latents.is_floating_point() and torch.equal(latents, latents.round()):
        top = float(latents.abs().max()) if latents.numel() else 0.0
        if top <= torch.iinfo(torch.int32).max:  # beyond int32 (or infinite) stays float
            return latents.to(getattr(torch, entropy.int_type(int(top)).name))
    return latents.clone()


def pack(records: Sequence[GridRecord], scenes: Mapping[str, GridRecord] | None = None) -> list[PackedGrids]:
    """Dequantise and stack records by (size, grid shape), scene references resolved against `scenes`."""
    members: dict[tuple[int, int, GridShape], list[int]] = defaultdict(list)
    parts = {}
    for fi, rec in enumerate(records):
        # Box-only levels only say where latents were coded: frames that differ in them decode together.
        members[(rec.height, rec.width, rec.shape.dense)].append(fi)
        parts[fi] = resolved(rec, scenes)
    groups = []
    for (h, w, shape), group in sorted(members.items()):
        stacked = [parts[fi] for fi in group]
        latents = [stacked_levels([p[0][lv] for p in stacked]) for lv in range(shape.levels)]
        layers = stacked_layers(shape, [p[1] for p in stacked])
        groups.append(PackedGrids(shape, h, w, latents, layers, group))
    return groups
