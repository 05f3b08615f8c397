"""Settings of the paper codec (Residual-INR as published): SIREN shapes, sampling and weight coding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ...format.entropy import CODERS
from ..base import FittedConfig
from .siren import SirenShape


@dataclass(frozen=True)
class ObjectSizeClass:
    """Object INR shape used for boxes whose pixel area is below `max_area` (exclusive)."""

    max_area: float
    shape: SirenShape


# Residual-INR (arXiv 2408.05617): object INR size chosen from the box area in pixels.
PAPER_OBJECT_CLASSES = (
    ObjectSizeClass(1001, SirenShape(width=10, depth=3)),
    ObjectSizeClass(3001, SirenShape(width=15, depth=3)),
    ObjectSizeClass(10001, SirenShape(width=17, depth=5)),
    ObjectSizeClass(float("inf"), SirenShape(width=24, depth=5)),
)
PAPER_BACKGROUND = SirenShape(width=28, depth=10)


@dataclass(frozen=True)
class PaperConfig(FittedConfig):
    """Settings of the paper codec: a background SIREN per frame, then one SIREN per box residual.

    Args:
        object_psnr, background_psnr: where each object INR / the background INR stops fitting (dB).
        max_steps, seed, device, lr: as FittedConfig.
        pixels_per_step: random pixels drawn per INR and step.
        eval_every: steps between full evaluations of the quantised INRs (the stopping test).
        weight_bits: bits of every weight/bias tensor but the first layer's weights.
        first_layer_bits: bits of the first layer's weights, which w0 amplifies.
        entropy_coder: "brotli" (default: within 1% of "ans", 10x faster to decode), "ans", "zstd", "raw".
        w0: SIREN frequency.
        background: the background INR's shape.
        object_classes: object INR shapes by box area.
    """

    preset: ClassVar[str] = "paper"
    object_psnr: float = 35.0
    background_psnr: float = 26.0
    max_steps: int = 2000
    lr: float = 1e-3
    pixels_per_step: int = 8192
    eval_every: int = 100
    first_layer_bits: int = 10
    entropy_coder: str = "brotli"
    w0: float = 30.0
    background: SirenShape = PAPER_BACKGROUND
    object_classes: tuple[ObjectSizeClass, ...] = field(default=PAPER_OBJECT_CLASSES)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eval_every < 1 or self.pixels_per_step < 1:
            raise ValueError("max_steps, eval_every and pixels_per_step must be >= 1")
        if not 2 <= self.first_layer_bits <= 16:
            raise ValueError(f"first_layer_bits must be in 2..16, got {self.first_layer_bits}")
        if self.entropy_coder not in CODERS:
            raise ValueError(f"unknown entropy_coder {self.entropy_coder!r}; valid: {', '.join(CODERS)}")

    @property
    def stored_w0(self) -> float:
        """w0 as the record stores it (float32), which the fit must use to match the decoder."""
        return float(np.float32(self.w0))

    def object_shape(self, area: float) -> SirenShape:
        """Object INR shape for a box covering `area` pixels."""
        for size_class in self.object_classes:
            if area < size_class.max_area:
                return size_class.shape
        return self.object_classes[-1].shape
