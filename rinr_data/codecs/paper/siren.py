"""Batched SIRENs: many small sine-activated MLPs of one shape stored as stacked tensors and run with bmm."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...core.devices import TILE


@dataclass(frozen=True, order=True)
class SirenShape:
    """Architecture of one SIREN: `depth` sine layers of `width` units, then a linear layer to `out_features`."""

    width: int
    depth: int
    in_features: int = 2
    out_features: int = 3

    def layer_dims(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every layer, input first."""
        dims = [(self.in_features, self.width)]
        dims += [(self.width, self.width)] * (self.depth - 1)
        dims.append((self.width, self.out_features))
        return dims

    @property
    def num_params(self) -> int:
        """Weights plus biases."""
        return sum(i * o + o for i, o in self.layer_dims())

    @property
    def macs_per_pixel(self) -> int:
        """Multiply-accumulates to evaluate one pixel."""
        return sum(i * o for i, o in self.layer_dims())


Params = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: weight [G, in, out], bias [G, 1, out]


def init_params(shape: SirenShape, count: int, w0: float, generator: torch.Generator) -> Params:
    """SIREN initialisation (Sitzmann et al. 2020) for `count` INRs, drawn on CPU so every device starts alike."""
    params: Params = []
    for layer, (fan_in, fan_out) in enumerate(shape.layer_dims()):
        bound = 1.0 / fan_in if layer == 0 else math.sqrt(6.0 / fan_in) / w0
        weight = (torch.rand(count, fan_in, fan_out, generator=generator) * 2 - 1) * bound
        bias_bound = 1.0 / math.sqrt(fan_in)
        bias = (torch.rand(count, 1, fan_out, generator=generator) * 2 - 1) * bias_bound
        params.append((weight, bias))
    return params


def forward(params: Params, coords: torch.Tensor, w0: float) -> torch.Tensor:
    """Evaluate stacked SIRENs: coords [G, P, in] -> outputs [G, P, out]."""
    h = coords
    last = len(params) - 1
    for layer, (weight, bias) in enumerate(params):
        h = torch.baddbmm(bias, h, weight)
        if layer != last:
            h = torch.sin(w0 * h)
    return h


def grid_coords(height: int | torch.Tensor, width: int | torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
    """Coordinates (x, y) in [-1, 1] of pixels at `flat_index` (row-major) of height x width grids.

    `height`/`width` may be ints or tensors broadcastable against `flat_index` (one grid per INR when fitting).
    """
    width = torch.as_tensor(width, device=flat_index.device)
    height = torch.as_tensor(height, device=flat_index.device)
    rows = torch.div(flat_index, width, rounding_mode="floor")
    cols = flat_index - rows * width
    x = torch.where(width > 1, cols.to(torch.float32) * (2.0 / (width - 1).clamp_min(1)) - 1.0, 0.0)
    y = torch.where(height > 1, rows.to(torch.float32) * (2.0 / (height - 1).clamp_min(1)) - 1.0, 0.0)
    return torch.stack((x, y), dim=-1)


def tile_coords(sizes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    """Grid coordinates of every INR's pixels cut into tiles [tiles, TILE, 2], last tiles padded with the last pixel."""
    hw = torch.tensor(sizes, device=device, dtype=torch.int64).view(-1, 2)
    n_pixels = hw[:, 0] * hw[:, 1]
    tiles = torch.div(n_pixels + TILE - 1, TILE, rounding_mode="floor")
    owner = torch.repeat_interleave(torch.arange(len(sizes), device=device), tiles)
    local = torch.arange(owner.numel(), device=device) - (torch.cumsum(tiles, 0) - tiles)[owner]
    flat = (local[:, None] * TILE + torch.arange(TILE, device=device)).minimum(n_pixels[owner][:, None] - 1)
    return grid_coords(hw[owner, 0][:, None], hw[owner, 1][:, None], flat)


def render(
    params: Params,
    sizes: list[tuple[int, int]],
    w0: float,
    *,
    max_tiles: int | None = None,
) -> list[torch.Tensor]:
    """Evaluate every INR of a stacked group over its full grid; returns one [h*w, out] tensor per INR.

    Pixels are processed in fixed-size tiles (see TILE) so results do not depend on which INRs share the call;
    `max_tiles` bounds the tiles of one bmm (default: 32 on CPU, where activations then stay in cache, 1024 on GPU).
    """
    device = params[0][0].device
    if max_tiles is None:
        max_tiles = 32 if device.type == "cpu" else 1024
    tiles_per_inr = [math.ceil(h * w / TILE) for h, w in sizes]
    coords = tile_coords(sizes, device)
    owner = torch.repeat_interleave(torch.arange(len(sizes), device=device), torch.tensor(tiles_per_inr, device=device))
    out = torch.empty(coords.shape[0], TILE, params[-1][0].shape[-1], device=device)
    for start in range(0, coords.shape[0], max_tiles):
        idx = owner[start : start + max_tiles]
        tile_params = [(w.index_select(0, idx), b.index_select(0, idx)) for w, b in params]
        out[start : start + max_tiles] = forward(tile_params, coords[start : start + max_tiles], w0)
    pieces = torch.split(out, tiles_per_inr)
    return [p.reshape(-1, p.shape[-1])[: h * w] for p, (h, w) in zip(pieces, sizes)]
