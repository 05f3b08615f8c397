"""Checkerboard context model of latent levels: each latent's Laplace mean and scale from already-decoded neighbours.

Levels are coded coarsest first, each in two passes over a checkerboard. Anchors ((row + col) even) see the coarser
level at their position; the other latents also see their four anchor neighbours (up, down, left, right). The mean is
a weighted sum of what a latent sees and the scale grows with its summed magnitude, on top of one base scale per pass
and region (in boxes / outside). Decoding is two vectorised passes per level, never a raster-order loop, and with
integer latents and parameters on a dyadic grid every mean and scale is exact in float64: encoder and decoders hand
the entropy coder identical models on any machine.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...format.entropy import MIN_LAPLACE_SCALE

# Features per pass: anchors see the coarser latent; the others their 4 anchor neighbours and the coarser latent.
ANCHOR_FEATURES = 1
OTHER_FEATURES = 5
WEIGHTS = ANCHOR_FEATURES + OTHER_FEATURES
PASSES = 2
# Mean weights and spreads are stored as int8 multiples of this step (a power of two keeps the arithmetic exact).
PARAM_STEP = 1 / 64
PARAM_MAX = 127


@dataclass(frozen=True)
class LevelContext:
    """Quantised context parameters of one latent level.

    Attributes:
        scales: float16-exact base scales [pass (anchors, others), region (in boxes, outside)].
        weights: int mean weights in PARAM_STEP units: [anchor: coarser, others: up, down, left, right, coarser].
        spreads: int scale growth per unit of summed |feature| in PARAM_STEP units, per pass.
    """

    scales: np.ndarray
    weights: np.ndarray
    spreads: np.ndarray


def anchors(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Checkerboard of the first pass: bool [height, width], True where (row + col) is even."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return (rows + cols) % 2 == 0


def features(level: torch.Tensor, coarser: torch.Tensor | None) -> torch.Tensor:
    """Context features [B, 5, h, w] of a level [B, h, w]: up, down, left, right neighbours and the coarser latent.

    At anchor positions only the coarser latent (last) is used; at the others the four neighbours are anchors, so a
    decoder that has filled in only the anchors computes the same features.
    """
    b, h, w = level.shape
    if coarser is None:
        parent = level.new_zeros(b, h, w)
    else:
        parent = coarser.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)[:, :h, :w]
    padded = F.pad(level[:, None], (1, 1, 1, 1))[:, 0]
    return torch.stack(
        [padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:], parent], dim=1
    )


def distribution(
    feats: torch.Tensor, inside: torch.Tensor, weights: torch.Tensor, spreads: torch.Tensor, scales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Laplace (mean, scale) [B, h, w] of every latent of a level, for both passes (the caller picks by `anchors`).

    feats [B, 5, h, w]; inside bool/float [B, h, w]; weights [B, 6]; spreads [B, 2]; scales [B, 2, 2] (already
    positive). Scales may come out below the coder's floor; the coder and `laplace_bits` clamp them.
    """
    anchor = anchors(*feats.shape[2:], device=feats.device)
    coarse = feats[:, 4]
    near = feats[:, :4]
    mean_a = weights[:, 0, None, None] * coarse
    mean_o = (weights[:, 1:5, None, None] * near).sum(dim=1) + weights[:, 5, None, None] * coarse
    inside = inside.to(feats.dtype)
    base = scales[:, :, 0, None, None] * inside[:, None] + scales[:, :, 1, None, None] * (1 - inside[:, None])
    scale_a = base[:, 0] + spreads[:, 0, None, None] * coarse.abs()
    scale_o = base[:, 1] + spreads[:, 1, None, None] * feats.abs().sum(dim=1)
    return torch.where(anchor, mean_a, mean_o), torch.where(anchor, scale_a, scale_o)


def quantize(weights: torch.Tensor, spreads: torch.Tensor, scales: torch.Tensor) -> LevelContext:
    """Round fitted float parameters of one level (weights [6], spreads [2], scales [2, 2]) to the stored grid."""

    def ints(t: torch.Tensor) -> np.ndarray:
        return np.clip(np.rint(t.detach().cpu().double().numpy() / PARAM_STEP), -PARAM_MAX, PARAM_MAX).astype(np.int8)

    base = np.clip(scales.detach().cpu().double().numpy(), MIN_LAPLACE_SCALE, 60000.0).astype(np.float16)
    return LevelContext(base, ints(weights), ints(spreads))


Positions = tuple[np.ndarray, np.ndarray]  # (rows, cols), row-major


@functools.lru_cache(maxsize=64)
def _checkerboard_positions(shape: tuple[int, int]) -> tuple[Positions, Positions]:
    out = _split_by_parity(*np.indices(shape).reshape(2, -1))
    for arr in (a for pos in out for a in pos):
        arr.flags.writeable = False  # cached and shared between calls
    return out


def _split_by_parity(rows: np.ndarray, cols: np.ndarray) -> tuple[Positions, Positions]:
    anchor = (rows + cols) % 2 == 0
    return (rows[anchor], cols[anchor]), (rows[~anchor], cols[~anchor])


def pass_positions(shape: tuple[int, int], coded: np.ndarray | None) -> tuple[Positions, Positions]:
    """Positions (row-major) coded in each pass of a level: anchors, then the others, within `coded` (None: all)."""
    if coded is None:
        return _checkerboard_positions(tuple(shape))
    return _split_by_parity(*np.nonzero(coded))


def models(
    latents: list[np.ndarray],
    masks: list[np.ndarray],
    contexts: list[LevelContext],
    bounds: list[int],
    coded: list[np.ndarray | None],
) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """In coding order (coarsest level first, anchors first): (level, values, means, scales) of every pass."""
    out = []
    for lv in reversed(range(len(latents))):
        coarser = latents[lv + 1] if lv + 1 < len(latents) else None
        for first, (rows, cols) in zip((True, False), pass_positions(latents[lv].shape, coded[lv])):
            mean, scale = pass_models(latents[lv], coarser, masks[lv], contexts[lv], bounds[lv], rows, cols, first)
            out.append((lv, latents[lv][rows, cols], mean, scale))
    return out


def table_parameters(weights: np.ndarray, spreads: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float64 [L, 12] of L levels' contexts for the compiled decoder: per level 6 mean weights, 2 spreads (int8
    [L, 6] and [L, 2]), then the base scales [pass][in box, outside] (float16 [L, 4]), each the exact value
    `pass_models` uses."""
    return np.concatenate(
        [
            np.asarray(weights, np.float64) * PARAM_STEP,
            np.asarray(spreads, np.float64) * PARAM_STEP,
            np.asarray(scales, np.float16).astype(np.float64),
        ],
        axis=1,
    )


def pass_models(
    level: np.ndarray,
    coarser: np.ndarray | None,
    mask: np.ndarray,
    ctx: LevelContext,
    bound: int,
    rows: np.ndarray,
    cols: np.ndarray,
    first: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 (means, scales) of one pass at (rows, cols): `distribution` evaluated there and nowhere else.

    The first pass (anchors) reads only the coarser level, the second also the four anchor neighbours of `level`,
    so a decoder calls it after filling in the anchors. Every product is an integer times a dyadic number and every
    sum stays far below 2**53, so any evaluation order gives the same bits as the training model.
    """
    weights = np.asarray(ctx.weights, np.float64) * PARAM_STEP
    spreads = np.asarray(ctx.spreads, np.float64) * PARAM_STEP
    scales = np.asarray(ctx.scales, np.float16).astype(np.float64)
    parent = np.zeros(len(rows)) if coarser is None else coarser[rows // 2, cols // 2].astype(np.float64)
    p = 0 if first else 1
    base = np.where(np.asarray(mask)[rows, cols], scales[p, 0], scales[p, 1])
    if first:
        mean = weights[0] * parent
        scale = base + spreads[0] * np.abs(parent)
    else:
        padded = np.pad(level, 1)
        near = tuple(
            padded[r, c].astype(np.float64)
            for r, c in ((rows, cols + 1), (rows + 2, cols + 1), (rows + 1, cols), (rows + 1, cols + 2))
        )
        mean = sum(w * f for w, f in zip(weights[1:5], near)) + weights[5] * parent
        scale = base + spreads[1] * (sum(np.abs(f) for f in near) + np.abs(parent))
    # The entropy coder's support is [-bound, bound]: a mean outside it adds nothing but risk.
    return np.clip(mean, -bound, bound), np.maximum(scale, MIN_LAPLACE_SCALE)
