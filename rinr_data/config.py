"""Codec configuration: presets and the dataclass every encode call takes."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from .grid import GridShape
from .siren import SirenShape

# "grid" (default): latent grids + a tiny synthesis MLP, entropy-coded; "paper": Residual-INR as published.
PRESETS = ("grid", "paper")
DEFAULT_PRESET = "grid"
# Fields left as None take their preset's value (measured in docs/BENCHMARKS.md).
PRESET_DEFAULTS: dict[str, dict[str, float | int]] = {
    "grid": dict(object_psnr=33.0, background_psnr=25.0, max_steps=1500, lr=0.03),
    "paper": dict(object_psnr=35.0, background_psnr=26.0, max_steps=2000, lr=1e-3),
}


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
DEFAULT_GRID = GridShape(levels=6, hidden=(16, 16), box_levels=2)
# Fields a preset does not read: they do not decide its bytes (resume checks and manifests leave them out).
UNUSED_FIELDS = {
    "grid": ("pixels_per_step", "eval_every", "first_layer_bits", "entropy_coder", "w0", "background",
             "object_classes"),
    "paper": ("latent_lr", "grid", "scene"),
}


@dataclass(frozen=True)
class SceneConfig:
    """Scene mode (static camera): one background record shared by consecutive frames.

    Args:
        window: frames whose per-pixel median (box pixels left out) is the scene background.
        psnr_margin: dB the scene background is fitted above `background_psnr`, headroom for frame-to-frame noise.
        cut_psnr: a frame the scene reproduces below this PSNR (dB, outside its boxes) starts the next scene; None:
            `background_psnr`. A lower value keeps a scene across frames whose passers-by and noise the frames'
            own corrections can fix, and still cuts where the camera moved (a cut scores ~10-18 dB).
    """

    window: int = 32
    psnr_margin: float = 5.0
    cut_psnr: float | None = None

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"scene window must be >= 1 frame, got {self.window}")


@dataclass(frozen=True)
class CodecConfig:
    """Encoder settings.

    Fields left as None take the preset's value (PRESET_DEFAULTS).

    Args:
        preset: "grid" (default: latent grids, entropy-coded) or "paper" (Residual-INR SIRENs as published).
        object_psnr: PSNR (dB) the boxes must reach ("paper": per object INR, where it stops fitting).
        background_psnr: PSNR (dB) outside the boxes ("paper": whole frame, where the background INR stops).
        max_steps: step budget of each fit ("grid" runs exactly this many steps).
        seed: seeds initialisation and pixel sampling; the same seed gives the same bytes on one machine.
        device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available).
        lr: Adam learning rate (of the weights) at the start of the cosine schedule.
        latent_lr: "grid": Adam learning rate of the latents, which live on the integer grid.
        pixels_per_step: "paper": random pixels drawn per INR and step ("grid" uses every pixel).
        eval_every: "paper": steps between full evaluations of the quantised INRs (the stopping test).
        weight_bits: bits of every weight/bias tensor but ("paper") the first layer's weights.
        first_layer_bits: "paper": bits of the first layer's weights, which w0 amplifies.
        entropy_coder: "paper": "brotli" (default: within 1% of "ans", 10x faster to decode), "ans", "zstd", "raw";
            "grid" records always code latents and weights with Laplace models and ANS.
        grid: "grid": latent levels and synthesis MLP.
        scene: scene-mode settings used by `encode_sequence` (None: its defaults).
    """

    preset: str = DEFAULT_PRESET
    object_psnr: float = None  # type: ignore[assignment]
    background_psnr: float = None  # type: ignore[assignment]
    max_steps: int = None  # type: ignore[assignment]
    seed: int = 0
    device: str = "cpu"
    lr: float = None  # type: ignore[assignment]
    latent_lr: float = 0.1
    pixels_per_step: int = 8192
    eval_every: int = 100
    weight_bits: int = 8
    first_layer_bits: int = 10
    entropy_coder: str = "brotli"
    w0: float = 30.0
    background: SirenShape = PAPER_BACKGROUND
    object_classes: tuple[ObjectSizeClass, ...] = field(default=PAPER_OBJECT_CLASSES)
    grid: GridShape = DEFAULT_GRID
    scene: SceneConfig | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid presets: {', '.join(PRESETS)}")
        for name, value in PRESET_DEFAULTS[self.preset].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
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
        """A copy with some fields changed (a new preset brings its own defaults for fields not given)."""
        if "preset" in changes and changes["preset"] != self.preset:
            for name in PRESET_DEFAULTS[self.preset]:
                changes.setdefault(name, None)
        return replace(self, **changes)

    def with_grid(self, **changes: int) -> "CodecConfig":
        """A copy whose grid shape has `changes` (box_levels, box_margin, ...; ValueError for the paper preset)."""
        if self.preset != "grid":
            raise ValueError(f"{', '.join(changes)} apply to the grid preset only, not {self.preset!r}")
        return self.replace(grid=replace(self.grid, **changes))

    def unused_fields(self) -> tuple[str, ...]:
        """Names of the fields this config's preset ignores."""
        return UNUSED_FIELDS[self.preset]

    @classmethod
    def preset_default(cls, name: str, preset: str = DEFAULT_PRESET) -> object:
        """A field's default under a preset (for help texts)."""
        if name in PRESET_DEFAULTS.get(preset, {}):
            return PRESET_DEFAULTS[preset][name]
        return {f.name: f.default for f in fields(cls)}[name]
