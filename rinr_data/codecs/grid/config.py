"""Settings of the latent-grid codec and of its scene mode."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ..base import FittedConfig
from .fit import check_compile, check_precision
from .model import GridShape
from .warm import WarmStart

DEFAULT_GRID = GridShape(levels=6, hidden=(16, 16), box_levels=2)
FRAME_SYNTHESIS = ("auto", "reuse", "tune")
# Scene mode's defaults (`GridConfig.for_scenes`, `rinr-encode --scene auto`). On a static camera the scene carries
# the background, so frames need little there: a low object target (the boxes come out ~26 dB, carried by the scene
# and the 28 dB ring), a 12 px margin so whatever a box clips of a moving person (limbs, shadow) is coded rather than
# replaced by the empty scene, and scene cuts only where the view changes (docs/BENCHMARKS.md, "Scene frames with a
# 12 px box margin").
SCENE_DEFAULTS: dict[str, Any] = {
    "object_psnr": 18.0,
    "background_psnr": 28.0,
    "max_steps": 600,
    "box_margin": 12,
    "cut_psnr": 20.0,
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
        fit_batch: the frames of a scene fitted together in one call (memory grows with it, not with the scene's
            length; the records depend on it only through the order of float sums and noise draws).
        frame_synthesis: "reuse": frames keep the scene's synthesis as it is; "tune": they fine-tune it and ship the
            differences; "auto" (default): reuse, and refit with tuning the frames that then miss a PSNR target by
            more than 0.5 dB (colours the scene never showed may be out of its synthesis' reach). Tuning alters the
            whole background, which the frame then pays to correct: on 12 vtest-long frames at 18 / 28 dB, 2,252
            B/frame at 25.7 / 29.5 dB tuned against 1,289 B at 26.9 / 30.8 dB reused (docs/BENCHMARKS.md).
    """

    window: int = 32
    psnr_margin: float = 5.0
    cut_psnr: float | None = None
    fit_batch: int = 16
    frame_synthesis: str = "auto"

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"scene window must be >= 1 frame, got {self.window}")
        if self.fit_batch < 1:
            raise ValueError(f"scene fit_batch must be >= 1 frame, got {self.fit_batch}")
        if self.frame_synthesis not in FRAME_SYNTHESIS:
            raise ValueError(f"unknown frame_synthesis {self.frame_synthesis!r}; valid: {', '.join(FRAME_SYNTHESIS)}")


@dataclass(frozen=True)
class GridConfig(FittedConfig):
    """Settings of the latent-grid codec (the default): entropy-coded latent levels and a tiny synthesis MLP.

    Args:
        object_psnr, background_psnr, max_steps, seed, device, lr, weight_bits: as FittedConfig ("grid" runs exactly
            max_steps steps; its rate-constrained fit aims at both PSNR targets).
        latent_lr: Adam learning rate of the latents, which live on the integer grid.
        grid: latent levels and synthesis MLP.
        scene: scene-mode settings used by `encode_sequence` (None: its defaults).
        warm_frames: frames of a dataset that `rinr-encode` fits first (max_steps, one shared synthesis) to learn
            the warm start of all the others; 0: every frame fits from scratch.
        warm_steps: fitting steps of a frame that starts warm (one still below a target after them gets up to a
            third more: `fit.WARM_TOP_UP`).
        warm: the warm start per-frame fits begin from (`rinr_data.warm_up` and rinr-encode set it; None: from
            scratch). Learned from the dataset and the settings above, so it is not a setting of its own.
        compile: the fitting step under torch.compile: "auto" (frames of 256x256 pixels or more, unless the
            environment sets RINR_COMPILE=0), "on" or "off".
            Like `device`, how the fit runs rather than what it computes (float sums may round differently), so it
            is not among `settings()`.
        precision: the fitting step's render in "float32", "bfloat16" (float32 accumulation; the loss and all
            trained values stay float32) or "auto" (bfloat16 on a CPU that computes it natively, else float32). A
            setting of how the fit runs, like `compile`.
    """

    preset: ClassVar[str] = "grid"
    object_psnr: float = 33.0
    background_psnr: float = 25.0
    max_steps: int = 1500
    lr: float = 0.03
    latent_lr: float = 0.1
    grid: GridShape = DEFAULT_GRID
    scene: SceneConfig | None = None
    warm_frames: int = 8
    warm_steps: int = 450
    warm: WarmStart | None = field(default=None, compare=False, repr=False)
    compile: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_compile(self.compile)
        check_precision(self.precision)
        if self.warm_frames < 0:
            raise ValueError(f"warm_frames must be >= 0, got {self.warm_frames}")
        if self.warm_steps < 1:
            raise ValueError(f"warm_steps must be >= 1, got {self.warm_steps}")
        if self.warm is not None:
            self.warm.check(self.grid)

    def settings(self) -> dict[str, Any]:
        """What decides the bytes, as FittedConfig's; the warm start follows from the data and these settings."""
        out = FittedConfig.settings(self.replace(warm=None))
        del out["warm"], out["compile"], out["precision"]
        return out

    @classmethod
    def for_scenes(cls, **fields: Any) -> "GridConfig":
        """Scene mode's defaults (SCENE_DEFAULTS: the setting measured closest to detector parity), `fields` on top."""
        defaults: dict[str, Any] = {
            "object_psnr": SCENE_DEFAULTS["object_psnr"],
            "background_psnr": SCENE_DEFAULTS["background_psnr"],
            "max_steps": SCENE_DEFAULTS["max_steps"],
            "grid": replace(DEFAULT_GRID, box_margin=SCENE_DEFAULTS["box_margin"]),
            "scene": SceneConfig(cut_psnr=SCENE_DEFAULTS["cut_psnr"]),
        }
        return cls(**{**defaults, **fields})

    def with_grid(self, **changes: int) -> "GridConfig":
        """A copy whose grid shape has `changes` (box_levels, box_margin, ...)."""
        return self.replace(grid=replace(self.grid, **changes))
