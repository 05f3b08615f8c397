"""Checkerboard context model of latent levels: each latent's Laplace mean and scale from already-decoded neighbours.

Levels are coded coarsest first, each in two passes over a checkerboard. Anchors ((row + col) even) see the coarser
level at their position; the other latents also see their four anchor neighbours (up, down, left, right). The mean is
a weighted sum of what a latent sees and the scale grows with its summed magnitude, on top of one base scale per pass
and region (in boxes / outside). Decoding is two vectorised passes per level, never a raster-order loop, and with
integer latents and parameters on a dyadic grid every mean and scale is exact in float64: encoder and decoders hand
the entropy coder identical models on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .entropy import MIN_LAPLACE_SCALE

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
    return torch.stack([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:], parent],
                       dim=1)


def distribution(feats: torch.Tensor, inside: torch.Tensor, weights: torch.Tensor, spreads: torch.Tensor,
                 scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def _exact(ctx: LevelContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact float64 (weights [1, 6], spreads [1, 2], scales [1, 2, 2]) of a quantised level context."""
    return (torch.from_numpy(np.asarray(ctx.weights, np.float64) * PARAM_STEP)[None],
            torch.from_numpy(np.asarray(ctx.spreads, np.float64) * PARAM_STEP)[None],
            torch.from_numpy(np.asarray(ctx.scales, np.float16).astype(np.float64))[None])


def quantize(weights: torch.Tensor, spreads: torch.Tensor, scales: torch.Tensor) -> LevelContext:
    """Round fitted float parameters of one level (weights [6], spreads [2], scales [2, 2]) to the stored grid."""
    def ints(t: torch.Tensor) -> np.ndarray:
        return np.clip(np.rint(t.detach().cpu().double().numpy() / PARAM_STEP), -PARAM_MAX, PARAM_MAX).astype(np.int8)

    base = np.clip(scales.detach().cpu().double().numpy(), MIN_LAPLACE_SCALE, 60000.0).astype(np.float16)
    return LevelContext(base, ints(weights), ints(spreads))


def passes(shape: tuple[int, int], coded: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Positions coded in each pass of a level: anchors, then the others, within `coded` (None: everywhere)."""
    anchor = anchors(*shape).numpy()
    if coded is None:
        return anchor, ~anchor
    return anchor & coded, ~anchor & coded


def models(latents: list[np.ndarray], masks: list[np.ndarray], contexts: list[LevelContext], bounds: list[int],
           coded: list[np.ndarray | None]) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """In coding order (coarsest level first, anchors first): (level, values, means, scales) of every pass."""
    out = []
    for lv in reversed(range(len(latents))):
        coarser = latents[lv + 1] if lv + 1 < len(latents) else None
        mean, scale = level_models(latents[lv], coarser, masks[lv], contexts[lv], bounds[lv])
        for sel in passes(latents[lv].shape, coded[lv]):
            out.append((lv, latents[lv][sel], mean[sel], scale[sel]))
    return out


def level_models(level: np.ndarray, coarser: np.ndarray | None, mask: np.ndarray, ctx: LevelContext, bound: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Exact (means, scales) float64 [h, w] of one level; only anchor positions are valid until anchors are known."""
    weights, spreads, scales = _exact(ctx)
    lvl = torch.from_numpy(np.asarray(level, np.float64))[None]
    crs = None if coarser is None else torch.from_numpy(np.asarray(coarser, np.float64))[None]
    mean, scale = distribution(features(lvl, crs), torch.from_numpy(np.asarray(mask))[None], weights, spreads, scales)
    # The entropy coder's support is [-bound, bound]: a mean outside it adds nothing but risk.
    return mean[0].clamp(-bound, bound).numpy(), scale[0].clamp_min(MIN_LAPLACE_SCALE).numpy()
