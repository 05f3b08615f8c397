"""Warm starts: what the fits of a dataset's frames start from, learned once on a sample of its frames.

A fit from scratch spends most of its steps moving latents from zero and a random synthesis to the frame. A dataset
is thousands of similar frames, so a sample of them is fitted once with one shared synthesis; each later frame
starts from that synthesis, entropy model and Lagrange weights, and from latents predicted by a linear analysis (per
level, a 3x3 filter over the frame's band-pass at that level's resolution, least-squares fitted to the sample's
latents), and needs under a third of the steps (450 against 1,500). The Lagrange weights start where the sample's
own short fits from that start ended (one calibration round), so each frame's weights settle within its few steps.
Nothing here travels: every record still holds its own synthesis and context model, only fitted from a better start.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .context import PASSES, WEIGHTS
from .model import GridShape, Layers

ANALYSIS_TAPS = 3  # the analysis filter is ANALYSIS_TAPS x ANALYSIS_TAPS over the band, per colour channel
ANALYSIS_FEATURES = 3 * ANALYSIS_TAPS**2 + 3 + 1  # band taps, the level's mean colour, a constant
FORMAT_VERSION = 1


@dataclass
class WarmStart:
    """Where a fit starts instead of a random synthesis, unit entropy scales, initial Lagrange weights and zero
    latents."""

    layers: Layers  # per layer: weight [1, in, out], bias [1, 1, out]
    log_scale: torch.Tensor  # [levels, PASSES, 2]
    ctx_weights: torch.Tensor  # [levels, WEIGHTS]
    ctx_spreads: torch.Tensor  # [levels, PASSES]
    log_weight: torch.Tensor  # [3]: objects, background, box-margin ring
    analysis: torch.Tensor | None = None  # [levels, ANALYSIS_FEATURES]: latents from the frame (None: zeros)

    def to_bytes(self, meta: dict) -> bytes:
        """An .npz of plain arrays (no pickles) with `meta` (what it was learned with) as JSON."""
        arrays = {f"layer{i}_{k}": t.numpy() for i, pair in enumerate(self.layers) for k, t in zip("wb", pair)}
        arrays.update(
            log_scale=self.log_scale.numpy(),
            ctx_weights=self.ctx_weights.numpy(),
            ctx_spreads=self.ctx_spreads.numpy(),
            log_weight=self.log_weight.numpy(),
            meta=np.frombuffer(json.dumps({"version": FORMAT_VERSION, **meta}).encode(), np.uint8),
        )
        if self.analysis is not None:
            arrays["analysis"] = self.analysis.numpy()
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, shape: GridShape) -> tuple["WarmStart", dict]:
        """A warm start and its meta from `to_bytes` output; ValueError when it does not fit `shape`."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("meta").tobytes())
            layers = [
                (torch.from_numpy(arrays[f"layer{i}_w"]), torch.from_numpy(arrays[f"layer{i}_b"]))
                for i in range(len(shape.layer_dims()))
            ]
            warm = cls(
                layers,
                torch.from_numpy(arrays["log_scale"]),
                torch.from_numpy(arrays["ctx_weights"]),
                torch.from_numpy(arrays["ctx_spreads"]),
                torch.from_numpy(arrays["log_weight"]),
                torch.from_numpy(arrays["analysis"]) if "analysis" in arrays else None,
            )
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a warm start: {exc}") from exc
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"warm start version {meta.get('version')!r}, this rinr-data reads {FORMAT_VERSION}")
        warm.check(shape)
        return warm, meta

    def check(self, shape: GridShape) -> None:
        """ValueError unless every tensor has the shape a fit of `shape` needs and is finite float32."""
        expected = [((1, i, o), (1, 1, o)) for i, o in shape.layer_dims()]
        found = [(tuple(w.shape), tuple(b.shape)) for w, b in self.layers]
        problems = [] if found == expected else [f"synthesis {found}, expected {expected}"]
        tensors = {
            "log_scale": (self.log_scale, (shape.levels, PASSES, 2)),
            "ctx_weights": (self.ctx_weights, (shape.levels, WEIGHTS)),
            "ctx_spreads": (self.ctx_spreads, (shape.levels, PASSES)),
            "log_weight": (self.log_weight, (3,)),
            "analysis": (self.analysis, (shape.levels, ANALYSIS_FEATURES)),
        }
        problems += [
            f"{name} {tuple(t.shape)}, expected {size}"
            for name, (t, size) in tensors.items()
            if t is not None and tuple(t.shape) != size
        ]
        every = [t for pair in self.layers for t in pair] + [t for t, _ in tensors.values() if t is not None]
        if not problems and not all(t.dtype == torch.float32 and bool(torch.isfinite(t).all()) for t in every):
            problems.append("tensors must be finite float32")
        if problems:
            raise ValueError(f"warm start does not fit grid {shape}: " + "; ".join(problems))


def analysis_features(image: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Per level, [ANALYSIS_FEATURES, h_l, w_l]: the 3x3 neighbourhood of the frame's band-pass at that level (its
    area mean minus the next level's, upsampled), the area mean itself and a constant."""
    pooled = [F.adaptive_avg_pool2d(image[None].float(), size) for size in sizes]
    out = []
    pad = ANALYSIS_TAPS // 2
    for lv, (hl, wl) in enumerate(sizes):
        coarse = (
            F.interpolate(pooled[lv + 1], size=(hl, wl), mode="bilinear", align_corners=False)
            if lv + 1 < len(sizes)
            else pooled[lv].mean(dim=(2, 3), keepdim=True)
        )
        band = F.pad(pooled[lv] - coarse, (pad,) * 4, mode="replicate")
        taps = F.unfold(band, ANALYSIS_TAPS).view(1, -1, hl, wl)
        out.append(torch.cat([taps, pooled[lv], torch.ones(1, 1, hl, wl)], dim=1)[0])
    return out


def fit_analysis(
    images: Sequence[torch.Tensor], latents: Sequence[Sequence[torch.Tensor]], coded: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """Least-squares analysis [levels, ANALYSIS_FEATURES] from frames [3, H, W] in [0, 1] to their fitted latents,
    over the latents each frame codes (`coded`: bool per level)."""
    levels = len(latents[0])
    rows: list[list[torch.Tensor]] = [[] for _ in range(levels)]
    values: list[list[torch.Tensor]] = [[] for _ in range(levels)]
    for image, lats, where in zip(images, latents, coded):
        feats = analysis_features(image, [tuple(t.shape) for t in lats])
        for lv, (f, lat, m) in enumerate(zip(feats, lats, where)):
            rows[lv].append(f[:, m].T)
            values[lv].append(lat[m].float())
    coefs = []
    for x, y in zip(rows, values):
        a, b = torch.cat(x).double(), torch.cat(y).double()
        # A ridge relative to each feature's energy keeps levels with few coded latents (box-only levels of a
        # sample with small boxes) solvable without favouring features by their scale.
        gram = a.T @ a
        gram = gram + 1e-4 * torch.diag(gram.diagonal().clamp_min(1e-12))
        coefs.append(torch.linalg.solve(gram, a.T @ b))
    return torch.stack(coefs).float()


def initial_latents(
    analysis: torch.Tensor, image: torch.Tensor, sizes: Sequence[tuple[int, int]]
) -> list[torch.Tensor]:
    """The analysis' latents [h_l, w_l] of a frame [3, H, W] in [0, 1]."""
    return [torch.einsum("fhw,f->hw", f, c) for f, c in zip(analysis_features(image, sizes), analysis)]


def read(path: str | Path, shape: GridShape) -> tuple[WarmStart, dict]:
    """A warm start saved by `write`, and its meta."""
    return WarmStart.from_bytes(Path(path).read_bytes(), shape)


def write(path: str | Path, warm: WarmStart, meta: dict) -> Path:
    """Save a warm start atomically (a crash never leaves half a file under `path`)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(warm.to_bytes(meta))
    tmp.replace(path)
    return path
