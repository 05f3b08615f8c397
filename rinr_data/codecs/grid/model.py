"""Latent-grid INRs: multi-resolution latent grids upsampled to the frame and mapped to RGB by a tiny shared MLP.

The family of C3 / Cool-chic, reduced to what decodes as a handful of batched ops on a GPU: level `l` is a grid of
ceil(H / 2^l) x ceil(W / 2^l) latents, every level is upsampled bicubically to H x W, and the per-pixel stack of
levels goes through a small ReLU MLP (the "synthesis"). Bits grow with pixel content, not with a fixed weight count.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ...core.devices import TILE
from ...core.frames import grow_mask

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: weight [B, in, out], bias [B, 1, out]
MAX_BOX_MARGIN = 255  # one byte in a record


@dataclass(frozen=True, order=True)
class GridShape:
    """Latent levels (each 1 channel, level l at 1/2^l resolution) and the synthesis MLP's hidden widths.

    `box_levels`: the finest levels that hold latents only where they touch a box (zero elsewhere, not coded): the
    background is then drawn from levels of 1/2^box_levels resolution and coarser. In an encoder's settings it is the
    most a frame gets: `frame_box_levels` gives fewer to frames whose background those levels cannot reproduce.
    `box_margin`: pixels around every box that count as the box's for where latents are coded and which entropy
    scale they take, so the fine levels also reach the parts of an object its box clips and the codec's seam.
    """

    levels: int = 6
    hidden: tuple[int, ...] = (16, 16)
    out_features: int = 3
    box_levels: int = 0
    box_margin: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.box_levels < self.levels:
            raise ValueError(f"box_levels must be in 0..{self.levels - 1} (levels - 1), got {self.box_levels}")
        if not 0 <= self.box_margin <= MAX_BOX_MARGIN:
            raise ValueError(f"box_margin must be in 0..{MAX_BOX_MARGIN} pixels, got {self.box_margin}")

    @property
    def dense(self) -> "GridShape":
        """This shape without box-only levels or margin: what decoding sees (both only say where latents were
        coded)."""
        return replace(self, box_levels=0, box_margin=0)

    def layer_dims(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every synthesis layer."""
        widths = [self.levels, *self.hidden, self.out_features]
        return list(zip(widths[:-1], widths[1:]))

    @property
    def num_params(self) -> int:
        """Synthesis weights plus biases."""
        return sum(i * o + o for i, o in self.layer_dims())

    @property
    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per output pixel: 16 bicubic taps per level plus the MLP."""
        return 16 * self.levels + sum(i * o for i, o in self.layer_dims())

    def level_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(rows, cols) of every latent level of an H x W frame, finest first."""
        return [(-(-height // 2**lv), -(-width // 2**lv)) for lv in range(self.levels)]


def level_masks(box_mask: torch.Tensor, shape: GridShape) -> list[torch.Tensor]:
    """Per level, which latents cover a pixel within `shape.box_margin` of a box (bool [h_l, w_l]); the entropy
    model codes those apart."""
    h, w = box_mask.shape
    m = grow_mask(box_mask, shape.box_margin)[None, None].float()
    out = [m[0, 0] > 0]
    # A latent of level l covers the 2x2 latents of level l-1 under it: pooling the level above reads 4x less
    # than pooling the frame's mask by 2**l (the decoder runs this for every record).
    for hl, wl in shape.level_sizes(h, w)[1:]:
        m = F.max_pool2d(F.pad(m, (0, 2 * wl - m.shape[-1], 0, 2 * hl - m.shape[-2])), 2)
        out.append(m[0, 0] > 0)
    return out


# A fitted grid reproduces a background ~1 dB better than plain bicubic from the same resolution (vtest-dev, 384x288:
# 24.7 dB low-pass, 25.5 dB fitted at 1/4): a level may go box-only while the low-pass stays within this of the goal.
BOX_LEVEL_TOLERANCE_DB = 0.5


def lowpass_psnr(image: torch.Tensor, box_mask: torch.Tensor, level: int) -> float:
    """PSNR (dB) outside the boxes of a float image [3, H, W] in [0, 1] area-downscaled by 2^level and bicubic back."""
    if level == 0 or bool(box_mask.all()):
        return math.inf
    h, w = image.shape[1:]
    x = image[None].to(torch.float32)
    small = F.interpolate(x, size=(-(-h // 2**level), -(-w // 2**level)), mode="area")
    back = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    mse = ((back - x) ** 2).mean(dim=1)[0][~box_mask].mean().clamp_min(1e-10)
    return float(-10 * torch.log10(mse))


def frame_box_levels(image: torch.Tensor, box_mask: torch.Tensor, shape: GridShape, background_psnr: float) -> int:
    """Box-only levels for one frame: at most `shape.box_levels`, fewer while the coarser levels alone could not
    reproduce its background at `background_psnr` (dense, detailed backgrounds; small frames)."""
    for level in range(shape.box_levels, 0, -1):
        if lowpass_psnr(image, box_mask, level) >= background_psnr - BOX_LEVEL_TOLERANCE_DB:
            return level
    return 0


def upsample(latents: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """Levels [B, 1, h_l, w_l] -> features [B, L, H, W] (bicubic, align_corners=False; level 0 is H x W already)."""
    feats = [
        lat
        if lat.shape[-2:] == (height, width)
        else F.interpolate(lat, size=(height, width), mode="bicubic", align_corners=False)
        for lat in latents
    ]
    return torch.cat(feats, dim=1)


def _mlp(layers: Layers, x: torch.Tensor, repeats: int = 1, channels_first: bool = False) -> torch.Tensor:
    # Row b of x runs through MLP b // repeats: each frame's MLP serves its `repeats` consecutive tiles. x is
    # [rows, pixels, C], or [rows, C, pixels] with `channels_first` (the fit's layout; the decoder's bits stay those
    # of the pixels-first GEMMs).
    for i, (weight, bias) in enumerate(layers):
        if repeats > 1:
            weight, bias = weight.repeat_interleave(repeats, dim=0), bias.repeat_interleave(repeats, dim=0)
        if channels_first:
            x = torch.baddbmm(bias.transpose(1, 2), weight.transpose(1, 2), x)
        else:
            x = torch.baddbmm(bias, x, weight)
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x


def synthesize(layers: Layers, features: torch.Tensor) -> torch.Tensor:
    """Features [B, L, H, W] -> RGB [B, 3, H, W] through each frame's own MLP (ReLU between layers).

    Pixels run in fixed tiles of TILE so every batched GEMM has the same shape whatever the batch: a frame decodes
    to the same bits alone or in a batch.
    """
    b, c, h, w = features.shape
    n = h * w
    tiles = -(-n // TILE)
    x = features.flatten(2).transpose(1, 2)  # [B, HW, L]
    if tiles * TILE != n:
        x = F.pad(x, (0, 0, 0, tiles * TILE - n))
    out = _mlp(layers, x.reshape(b * tiles, TILE, c), tiles).reshape(b, tiles * TILE, -1)[:, :n]
    return out.transpose(1, 2).reshape(b, -1, h, w)


def render(layers: Layers, latents: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """Float RGB [B, 3, H, W] (unclamped) of B frames of one size and shape.

    On a GPU with Triton, one fused kernel (`fused.render_fused`: upsampling and synthesis in registers); RINR_FUSED=0
    turns it off. Upsampling then `synthesize` is the reference, and the path for CPUs, autograd and wide MLPs.
    """
    from . import fused  # local: the optional fused path stays out of this module's import-time dependencies

    if fused.enabled() and fused.available(latents[0].device) and fused.supports(layers, latents):
        return fused.render_fused(layers, latents, height, width)
    return synthesize(layers, upsample(latents, height, width))


@functools.lru_cache(maxsize=64)
def _resampling_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    eye = torch.eye(n_in, device=device, dtype=dtype)[None, :, :, None]
    # A size-1 axis resampled to size 1 is the identity, so this is the 1-D bicubic kernel F.interpolate applies.
    return F.interpolate(eye, size=(n_out, 1), mode="bicubic", align_corners=False)[0, :, :, 0].T.contiguous()


def resampling_matrix(
    n_in: int, n_out: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[n_out, n_in] weights of `upsample`'s bicubic resampling along one axis (borders clamped, as F.interpolate)."""
    return _resampling_matrix(n_in, n_out, torch.device(device), dtype)


def resampling_matrices(
    sizes: list[tuple[int, int]],
    height: int,
    width: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """Per level of `sizes` (rows, cols): `render_dense`'s row and column resampling weights, None at frame size."""
    return [
        None
        if (rows, cols) == (height, width)
        else (resampling_matrix(rows, height, device, dtype), resampling_matrix(cols, width, device, dtype))
        for rows, cols in sizes
    ]


def render_dense(
    layers: Layers,
    latents: list[torch.Tensor],
    height: int,
    width: int,
    matrices: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None,
) -> torch.Tensor:
    """`render` for fitting: the same pixels up to float rounding, several times faster to differentiate.

    Bicubic resampling is separable, so each level is upsampled by two matrix products (row weights, column weights)
    whose backward passes are matrix products too, where F.interpolate's backward scatters every tap; and the
    synthesis runs on whole frames, without the fixed tiles `synthesize` keeps for bit-exact decoding. `matrices`:
    `resampling_matrices(...)` made once (else made here, cached).
    """
    if matrices is None:
        sizes = [tuple(lat.shape[-2:]) for lat in latents]
        matrices = resampling_matrices(sizes, height, width, latents[0].device, latents[0].dtype)
    feats = []
    for lat, pair in zip(latents, matrices):
        if pair is None:
            feats.append(lat[:, 0])
            continue
        rows_w, cols_w = pair
        feats.append(rows_w @ (lat[:, 0] @ cols_w.T))
    b = latents[0].shape[0]
    # Channels first ([B, C, pixels]): the GEMMs run along the long pixel axis and no transposed copy is made of the
    # features or the output, 1.2-1.4x faster forward and backward than `_mlp`'s pixels-first layout on a CPU.
    x = _mlp(layers, torch.stack(feats, dim=1).reshape(b, len(latents), height * width), channels_first=True)
    return x.reshape(b, -1, height, width)


def init_layers(shape: GridShape, count: int, generator: torch.Generator, device: torch.device) -> Layers:
    """He-uniform weights and zero biases for `count` stacked MLPs (the last bias starts at mid-grey)."""
    layers: Layers = []
    dims = shape.layer_dims()
    for i, (fan_in, fan_out) in enumerate(dims):
        bound = (6.0 / fan_in) ** 0.5 if i < len(dims) - 1 else (1.0 / fan_in) ** 0.5
        weight = (torch.rand(count, fan_in, fan_out, generator=generator) * 2 - 1) * bound
        bias = torch.full((count, 1, fan_out), 0.5 if i == len(dims) - 1 else 0.0)
        layers.append((weight.to(device), bias.to(device)))
    return layers


def _cubic_taps(points: torch.Tensor, samples: int, extent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Border-clamped indices and weights [..., 4] of bicubic (A = -0.75) taps on `samples` latents spanning
    `extent` frame pixels, at frame points `points`: F.interpolate's taps, align_corners=False, at the identity."""
    # The arithmetic follows ATen's upsample_bicubic2d in float32 (scale = in / out, src = scale * x - 0.5), so at the
    # identity the taps and weights are the ones `upsample` uses.
    scale = torch.tensor(float(samples), dtype=torch.float32) / torch.tensor(float(extent), dtype=torch.float32)
    src = points.to(torch.float32) * scale.to(points.device) - 0.5
    base = src.floor()
    t = src - base
    a = -0.75

    def near(x: torch.Tensor) -> torch.Tensor:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = torch.stack([far(t + 1), near(t), near(1 - t), far((1 - t) + 1)], dim=-1)
    index = base.to(torch.int64)[..., None] + torch.arange(-1, 3, device=points.device)
    return index.clamp_(0, samples - 1), weights


def _resampling_weights(points: torch.Tensor, samples: int, extent: int) -> torch.Tensor:
    """[B, n, samples] weights sampling `samples` latents bicubically at frame points `points` [B, n]."""
    index, weights = _cubic_taps(points, samples, extent)
    matrix = torch.zeros(*points.shape, samples, dtype=weights.dtype, device=weights.device)
    # Taps clamped onto the same border latent add up, as F.interpolate reads a clamped index once per tap.
    return matrix.scatter_add_(-1, index, weights)


def sample_levels(
    latents: list[torch.Tensor], height: int, width: int, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """Levels [B, 1, h_l, w_l] of H x W frames sampled bicubically at frame points -> features [B, L, H', W'].

    `rows` [B, H'] and `cols` [B, W'] are per-frame source points in pixels (edges at integers). At the frame's pixel
    centres this is `upsample` up to float rounding (level 0 exactly). Bicubic sampling along an axis-aligned warp is
    separable: two batched matrix products per level (columns first, then rows, as ATen's kernel goes), which ran
    1.5x faster than F.interpolate on a CPU and are GEMMs on a GPU.
    """
    feats = []
    for lat in latents:
        h_l, w_l = lat.shape[-2:]
        across = torch.matmul(lat[:, 0], _resampling_weights(cols, w_l, width).transpose(1, 2))  # [B, h_l, W']
        feats.append(torch.matmul(_resampling_weights(rows, h_l, height), across))
    return torch.stack(feats, dim=1)


def render_warped(
    layers: Layers,
    latents: list[torch.Tensor],
    height: int,
    width: int,
    rows: torch.Tensor,
    cols: torch.Tensor,
    fill: float = 0.0,
) -> torch.Tensor:
    """Float RGB [B, 3, H', W'] (unclamped) of B H x W frames at source points `rows` [B, H'] x `cols` [B, W'].

    The points are in pixels (edges at integers), monotonic along each axis as a scale-and-shift warp gives them.
    Each level is sampled bicubically at the points (`sample_levels`) and the MLP runs only on points inside the
    frame ([0, H] x [0, W]); the others are `fill`. A frame's points run in tiles of TILE of its own, as in
    `synthesize`, so it decodes to the same bits alone or in a batch, and at the frame's own pixel centres to the
    values of `render` up to the float rounding of the resampling.
    """
    b, n_rows, n_cols = rows.shape[0], rows.shape[1], cols.shape[1]
    feats = sample_levels(latents, height, width, rows.to(latents[0].device), cols.to(latents[0].device))
    row_in = (rows >= 0) & (rows <= height)
    col_in = (cols >= 0) & (cols <= width)
    if bool(row_in.all()) and bool(col_in.all()):
        return synthesize(layers, feats)  # nothing to leave out: the tiles `render` runs
    # Points inside the frame form a rectangle per frame (the warp is monotonic per axis): cut it out, run its pixels
    # in tiles of their own, put them back on a canvas of `fill`.
    spans = [_span(r) + _span(c) for r, c in zip(row_in.tolist(), col_in.tolist())]
    pieces, tiles = [], []
    for i, (r0, r1, c0, c1) in enumerate(spans):
        x = feats[i, :, r0:r1, c0:c1].reshape(feats.shape[1], -1).T  # [kept, L]
        count = -(-x.shape[0] // TILE)
        pieces.append(F.pad(x, (0, 0, 0, count * TILE - x.shape[0])))
        tiles.append(count)
    out = torch.full((b, layers[-1][0].shape[-1], n_rows, n_cols), fill, dtype=feats.dtype, device=feats.device)
    if sum(tiles):
        owner = torch.repeat_interleave(torch.arange(b), torch.tensor(tiles)).to(feats.device)
        rgb = _mlp([(w[owner], bias[owner]) for w, bias in layers], torch.cat(pieces).reshape(sum(tiles), TILE, -1))
        start = 0
        for i, (r0, r1, c0, c1) in enumerate(spans):
            kept = (r1 - r0) * (c1 - c0)
            if kept:
                flat = rgb.reshape(-1, rgb.shape[-1])[start : start + kept]
                out[i, :, r0:r1, c0:c1] = flat.T.reshape(-1, r1 - r0, c1 - c0)
            start += tiles[i] * TILE
    return out


def _span(inside: list[bool]) -> tuple[int, int]:
    """[first, last + 1) of the True entries of a run-shaped mask (0, 0 when none)."""
    if True not in inside:
        return 0, 0
    first = inside.index(True)
    return first, len(inside) - inside[::-1].index(True)
