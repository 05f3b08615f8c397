"""Latent-grid records stacked for a batched render: frames of one size and grid shape share one call."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .model import GridShape, Layers, render
from .record import GridRecord, resolve


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
        return list(render(group.layers, group.latents, self.height, self.width))


def pack(records: Sequence[GridRecord], scenes: Mapping[str, GridRecord] | None = None) -> list[PackedGrids]:
    """Dequantise and stack records by (size, grid shape), scene references resolved against `scenes`."""
    members: dict[tuple[int, int, GridShape], list[int]] = defaultdict(list)
    parts = {}
    for fi, rec in enumerate(records):
        # Box-only levels only say where latents were coded: frames that differ in them decode together.
        members[(rec.height, rec.width, rec.shape.dense)].append(fi)
        parts[fi] = resolve(rec, scenes)
    groups = []
    for (h, w, shape), group in sorted(members.items()):
        stacked = [parts[fi] for fi in group]
        latents = [torch.stack([p[0][lv] for p in stacked]) for lv in range(shape.levels)]
        layers = [
            (torch.cat([p[1][i][0] for p in stacked]), torch.cat([p[1][i][1] for p in stacked]))
            for i in range(len(shape.layer_dims()))
        ]
        groups.append(PackedGrids(shape, h, w, latents, layers, group))
    return groups
