"""Codec configuration: presets and the dataclass every encode call takes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .siren import SirenShape

PRESETS = ("paper",)


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
class CodecConfig:
    """Encoder settings.

    Args:
        preset: architecture family; "paper" is Residual-INR as published.
        object_psnr: per-box PSNR (dB) at which an object INR stops fitting.
        background_psnr: whole-frame PSNR (dB) at which a background INR stops fitting.
        max_steps: step budget of each fit (background and objects alike).
        seed: seeds initialisation and pixel sampling; the same seed gives the same bytes on one machine.
        device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available).
        lr: Adam learning rate at the start of the cosine schedule.
        pixels_per_step: random pixels drawn per INR and step.
        eval_every: steps between full evaluations of the quantised INRs (the stopping test).
        weight_bits: bits of every weight/bias tensor but the first layer's weights.
        first_layer_bits: bits of the first layer's weights, which w0 amplifies.
        entropy_coder: "brotli" (default: within 1% of "ans" in bytes, 10x faster to decode), "ans", "zstd", "raw".
        batch_frames: frames fitted together by encode_batch.
    """

    preset: str = "paper"
    object_psnr: float = 35.0
    background_psnr: float = 26.0
    max_steps: int = 2000
    seed: int = 0
    device: str = "cpu"
    lr: float = 1e-3
    pixels_per_step: int = 8192
    eval_every: int = 100
    weight_bits: int = 8
    first_layer_bits: int = 10
    entropy_coder: str = "brotli"
    w0: float = 30.0
    background: SirenShape = PAPER_BACKGROUND
    object_classes: tuple[ObjectSizeClass, ...] = field(default=PAPER_OBJECT_CLASSES)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid presets: {', '.join(PRESETS)}")
        if self.max_steps < 1 or self.eval_every < 1 or self.pixels_per_step < 1:
            raise ValueError("max_steps, eval_every and pixels_per_step must be >= 1")
        for name in ("weight_bits", "first_layer_bits"):
            if not 2 <= getattr(self, name) <= 16:
                raise ValueError(f"{name} must be in 2..16, got {getattr(self, name)}")
        from .entropy import CODERS  # local: entropy imports nothing from here, but keep config import-light

        if self.entropy_coder not in CODERS:
            raise ValueError(f"unknown entropy_coder {self.entropy_coder!r}; valid: {', '.join(CODERS)}")

    def object_shape(self, area: float) -> SirenShape:
        """Object INR shape for a box covering `area` pixels."""
        for size_class in self.object_classes:
            if area < size_class.max_area:
                return size_class.shape
        return self.object_classes[-1].shape

    def replace(self, **changes: object) -> "CodecConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)
