"""Rate-constrained fitting of latent-grid INRs: least bits such that boxes and background reach their PSNR targets.

Every frame of a call is fitted at once (frames of one size stacked). The loss of a frame is its estimated rate in
bits per pixel plus a weighted MSE inside and outside its boxes (and in the ring of a box margin); the weights are
Lagrange multipliers raised or lowered every step by how far the region's PSNR is from its target (dual ascent), so
the fit lands on the targets instead of on a hand-tuned lambda. Latents are trained with additive uniform noise
first, then with straight-through rounding, and the synthesis weights are fake-quantised in that second phase, so
what is measured is what ships.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ...core.fitting import PSNR_MARGIN, cosine_lr, derive_seed
from ...format.entropy import laplace_bits
from ...format.quantize import f16_steps, qmax
from . import context as grid_context
from .context import LevelContext
from .model import GridShape, Layers, init_layers, level_masks, render, render_dense, resampling_matrices
from .warm import WarmStart, initial_latents

# Targets are aimed this far above the asked PSNR so uint8 rounding at decode does not pull a region below it.
LR_FLOOR = 0.02
# Start of both Lagrange weights (1 / lambda of a classic rate-distortion loss) and their log-step per dB of error.
INITIAL_WEIGHT = 150.0
DUAL_STEP = 0.004
# A warm-started fit has a fraction of the steps to move each frame's weights to what it needs (measured at 300
# steps on 8 held-out vtest-long frames, docs/BENCHMARKS.md "Warm starts"; kept at the 450 of rinr-data 0.10).
WARM_DUAL_STEP = 0.008
# A warm fit ends at its budget; about 1 frame in 12 is then still below a target, by 0.04-0.64 dB (150 vtest-long
# frames, docs/BENCHMARKS.md "Warm-started records at full size"). Such frames get up to this fraction of the budget
# in more steps.
WARM_TOP_UP = 1 / 3
# A frame counts as at its targets this far above them in the fit's own measure (rounded latents, fake-quantised
# synthesis, float pixels): the decoder's uint8 rounding costs ~0.01 dB at these PSNRs.
TOP_UP_MARGIN = 0.05
# torch.compile fuses the step's elementwise work (1.45x per step on a 384x288 CPU fit) but costs ~100 s per graph on
# a 2-core CPU the first time (seconds once inductor's on-disk cache holds it): "auto" compiles frames this large,
# where a dataset's worth of steps repays it, and leaves small frames (thumbnails, tests, the demo) eager.
COMPILE_PIXELS = 256 * 256
COMPILE_MODES = ("auto", "on", "off")
RECOMPILE_LIMIT = 64
# The render of a fitting step (resampling products and synthesis GEMMs, most of its time) may run in bfloat16 with
# float32 accumulation; the loss, the entropy model and every trained tensor stay float32. On a CPU with native
# bfloat16 (AVX512-BF16 or AMX) that made 384x288 warm fits 1.25x faster (the render alone 1.5-1.7x) with bytes within
# 0.6% and PSNRs within 0.11 dB (docs/BENCHMARKS.md, "Fitting in bfloat16"); where bfloat16 is emulated it is slower,
# so "auto" takes it only where it is native. CUDA stays float32 under "auto" until tools/gpu_check.sh has measured it.
PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class GridFitSettings:
    """Optimisation settings of one latent-grid fitting call."""

    steps: int
    lr: float
    weight_bits: int
    seed: int
    latent_lr: float = 0.1
    noise_fraction: float = 0.6
    context: bool = True  # code latents under the checkerboard context model (else one scale per level and region)
    dense_render: bool = True  # differentiate `render_dense` (else the decoder's `render`: the slower reference)
    dual_step: float = DUAL_STEP  # log-step of the Lagrange weights per dB of error
    warm: WarmStart | None = None  # start synthesis, entropy model and Lagrange weights here (else from scratch)
    shared: bool = False  # one synthesis and entropy model for all targets: how a warm start is learned
    tune_synthesis: bool = False  # frames on a scene fine-tune its synthesis (else they reuse it as it is)
    compile: str = "off"  # the step's loss under torch.compile: "on", "off", "auto" (frames of COMPILE_PIXELS or more)
    top_up: int = 0  # at most this many more steps for frames below a target when `steps` end (per-frame fits)
    precision: str = "float32"  # the step's render: "float32", "bfloat16" or "auto" (PRECISIONS)


@dataclass
class SceneBase:
    """A scene's dequantised latents (levels [1, h_l, w_l]) and synthesis, plus the synthesis' quantisation steps.

    A frame fitted on a base adds its latents to the scene's and keeps the scene's synthesis (or, with
    `GridFitSettings.tune_synthesis`, fine-tunes it on the same steps), so it ships only integer differences.
    """

    latents: list[torch.Tensor]
    layers: Layers
    steps: list[tuple[float, float]]  # per layer: weight step, bias step


@dataclass
class GridTarget:
    """One frame to fit: float image [3, H, W] in [0, 1], box mask [H, W], PSNR targets (dB) in and out of boxes."""

    image: torch.Tensor
    box_mask: torch.Tensor
    object_psnr: float
    background_psnr: float
    base: SceneBase | None = None
    box_levels: int | None = None  # this frame's box-only levels (None: the shape's)


@dataclass
class GridFit:
    """Integer latents per level [h_l, w_l], float synthesis layers (quantised by the caller's record writer) and the
    quantised context model of each level (None when fitted without one)."""

    latents: list[torch.Tensor]
    layers: Layers
    context: list[LevelContext] | None = None
    box_levels: int = 0
    steps: int = 0  # fitting steps this frame's result took (the budget, plus any top-up steps)


def fake_quantize(x: torch.Tensor, bits: int, step: torch.Tensor | None = None) -> torch.Tensor:
    """Per-tensor symmetric quantisation with a straight-through gradient (one step per stacked frame).

    `step` [B] fixes the steps (scene mode); by default each tensor's largest magnitude sets its step, rounded up to
    float16 as the record stores it (`quantize_tensor`), so the fit is measured with the weights that ship: with
    float32 steps a weight near half a step rounds the other way in the record, which cost up to 0.6 dB of object
    PSNR on a 384x288 frame against what the fit measured.
    """
    bound = qmax(bits)
    dims = tuple(range(1, x.dim()))
    if step is None:
        step = f16_steps(x.detach().abs().amax(dim=dims, keepdim=True), bound)
    else:
        step = step.view(-1, *([1] * len(dims)))
    return x + (torch.round(x / step).clamp(-bound, bound) * step - x).detach()


def fit_grids(
    shape: GridShape,
    targets: Sequence[GridTarget],
    settings: GridFitSettings,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
) -> list[GridFit]:
    """Fit one latent grid (and, unless a target has a base, one synthesis MLP) per target."""
    device = torch.device(device)
    by_size: dict[tuple[int, int, bool], list[int]] = {}
    for i, t in enumerate(targets):
        by_size.setdefault((*t.image.shape[1:], t.base is not None), []).append(i)
    fits: list[GridFit | None] = [None] * len(targets)
    for salt, members in enumerate(by_size.values()):
        group = [targets[i] for i in members]
        for i, fit in zip(members, _fit_group(shape, group, settings, device, salt, on_step)[0]):
            fits[i] = fit
    return fits  # type: ignore[return-value]


def fit_ended(
    shape: GridShape,
    targets: Sequence[GridTarget],
    settings: GridFitSettings,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
) -> tuple[list[GridFit], WarmStart]:
    """Fit frames of one size and say where the fit ended: the synthesis and entropy model (the one all frames share
    with `settings.shared`, else their mean) and the mean of the frames' Lagrange weights; warm starts are made
    from it."""
    sizes = {tuple(t.image.shape[1:]) for t in targets}
    if len(sizes) != 1:
        raise ValueError(f"fit_ended takes frames of one size, got {sorted(sizes)}")
    return _fit_group(shape, list(targets), settings, torch.device(device), 0, on_step)


def _fit_group(
    shape: GridShape,
    targets: list[GridTarget],
    settings: GridFitSettings,
    device: torch.device,
    salt: int,
    on_step: Callable[[int], None] | None,
) -> tuple[list[GridFit], WarmStart]:
    count = len(targets)
    h, w = targets[0].image.shape[1:]
    warm = settings.warm
    gen = torch.Generator().manual_seed(derive_seed(settings.seed, salt))
    image = torch.stack([t.image for t in targets]).to(device)
    inside = torch.stack([t.box_mask for t in targets]).to(device)[:, None].float()
    masks = [
        torch.stack(ms).to(device)[:, None].float() for ms in zip(*(level_masks(t.box_mask, shape) for t in targets))
    ]
    # The box margin's ring (level 0 is at pixel resolution) must reach the background target on its own: pooled
    # with the whole background, the seam a box's fine levels leave at its edge would cost the fit almost nothing.
    ring = masks[0] - inside
    regions = (inside, 1 - inside, ring)
    n_px = torch.stack([r.sum(dim=(1, 2, 3)) for r in regions], dim=1)  # [B, region]
    goal = (
        torch.tensor([[t.object_psnr, t.background_psnr, t.background_psnr] for t in targets], device=device)
        + PSNR_MARGIN
    )
    box_levels = [shape.box_levels if t.box_levels is None else t.box_levels for t in targets]
    if not all(0 <= b <= shape.box_levels for b in box_levels):
        raise ValueError(f"target box levels {box_levels} must be in 0..{shape.box_levels} (the shape's)")
    # Where latents exist: box-only levels of a frame only at its boxes, every other level everywhere.
    exists = [
        torch.stack([m[i] if lv < b else torch.ones_like(m[i]) for i, b in enumerate(box_levels)])
        for lv, m in enumerate(masks)
    ]

    bases = [t.base for t in targets]
    if bases[0] is not None and (warm is not None or settings.shared):
        raise ValueError("frames fitted on a scene start from the scene: no warm start, no shared synthesis")
    rows = 1 if settings.shared else count  # synthesis and entropy models: one per frame, or one for all
    latents = [torch.zeros(count, 1, hl, wl, device=device) for hl, wl in shape.level_sizes(h, w)]
    if warm is not None and warm.analysis is not None:
        for i, t in enumerate(targets):
            start = initial_latents(warm.analysis, t.image, shape.level_sizes(h, w))
            for lv, lat in enumerate(start):
                latents[lv][i, 0] = lat.to(device) * exists[lv][i, 0]
    for lat in latents:
        lat.requires_grad_()
    n_layers = len(shape.layer_dims())
    if bases[0] is not None:
        base_lat = [torch.stack([b.latents[lv] for b in bases]).to(device) for lv in range(shape.levels)]
        layers = [
            tuple(
                torch.cat([b.layers[i][k] for b in bases]).to(device).requires_grad_(settings.tune_synthesis)
                for k in (0, 1)
            )
            for i in range(n_layers)
        ]
        steps = [
            tuple(torch.tensor([b.steps[i][k] for b in bases], device=device) for k in (0, 1)) for i in range(n_layers)
        ]
    else:
        base_lat, steps = None, [(None, None)] * n_layers
        start = (
            init_layers(shape, rows, gen, device)
            if warm is None
            else [tuple(t.to(device).repeat(rows, 1, 1) for t in pair) for pair in warm.layers]
        )
        layers = [(wt.requires_grad_(), b.requires_grad_()) for wt, b in start]
    trainable = [t for pair in layers for t in pair]
    # Scene mode ships the synthesis as integer differences to the scene's: their bits count in the rate too.
    anchors = [(t.detach().clone(), s) for t, s in zip(trainable, (s for pair in steps for s in pair)) if s is not None]
    log_scale_syn = torch.zeros(count, len(anchors), device=device, requires_grad=True)
    # Entropy model per level: base scales [pass, region]; with the context model also mean weights and spreads.
    if warm is None:
        log_scale = torch.zeros(rows, shape.levels, grid_context.PASSES, 2, device=device)
        ctx_weights = torch.zeros(rows, shape.levels, grid_context.WEIGHTS, device=device)
        ctx_spreads = torch.zeros(rows, shape.levels, grid_context.PASSES, device=device)
        log_weight = torch.full((count, 3), math.log(INITIAL_WEIGHT), device=device)
    else:
        log_scale, ctx_weights, ctx_spreads = (
            t.to(device).repeat(rows, *[1] * t.dim()) for t in (warm.log_scale, warm.ctx_weights, warm.ctx_spreads)
        )
        log_weight = warm.log_weight.to(device).repeat(count, 1)
    for t in (log_scale, ctx_weights, ctx_spreads):
        t.requires_grad_()
    # Latents live on the integer grid, far larger than the synthesis weights: they need their own, larger step.
    opt = torch.optim.Adam(
        [
            {"params": latents, "base": settings.latent_lr},
            {"params": [*trainable, log_scale, log_scale_syn, ctx_weights, ctx_spreads], "base": settings.lr},
        ]
    )
    noise_gen = torch.Generator(device=device).manual_seed(settings.seed * 7919 + salt)
    noise_steps = int(settings.steps * settings.noise_fraction)
    matrices = resampling_matrices(shape.level_sizes(h, w), h, w, device) if settings.dense_render else None
    problem = _Problem(
        image,
        regions,
        n_px,
        masks,
        exists,
        base_lat,
        steps,
        anchors,
        settings.context,
        settings.weight_bits,
        matrices,
        render_dtype(settings.precision, device),
    )
    loss_fn = _CompiledLoss() if _use_compile(settings.compile, h * w) else _step_loss

    def gradients(noise: list[torch.Tensor] | None) -> torch.Tensor:
        """The step's gradients in place; returns its region PSNRs [B, 3] (dB)."""
        loss, mse = loss_fn(
            problem, latents, layers, log_scale, ctx_weights, ctx_spreads, log_scale_syn, log_weight, noise
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        return -10 * torch.log10(mse.detach().clamp_min(1e-10))

    def update(psnr: torch.Tensor) -> None:
        opt.step()
        with torch.no_grad():
            log_weight.add_(settings.dual_step * (goal - psnr).clamp(-3, 3))

    for step in range(settings.steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, settings.steps, g["base"], LR_FLOOR)
        # Noise is drawn outside the loss (latents first, then synthesis differences) so a compiled loss sees no
        # generator, and the draws are the same either way.
        noise = (
            [
                torch.rand(t.shape, generator=noise_gen, device=device) - 0.5
                for t in (*latents, *trainable[: len(anchors)])
            ]
            if step < noise_steps
            else None
        )
        update(gradients(noise))
        if on_step is not None:
            on_step(count)
    extra = [0] * count
    if settings.top_up and rows == count:
        per_frame = [*latents, *trainable, log_scale, ctx_weights, ctx_spreads, log_scale_syn, log_weight]
        extra = _top_up(per_frame, opt, gradients, update, goal - PSNR_MARGIN + TOP_UP_MARGIN, settings.top_up, on_step)

    fits = []
    with torch.no_grad():
        final = [torch.round(lat) * e for lat, e in zip(latents, exists)]
        for i in range(count):
            r = min(i, rows - 1)
            lat = [level[i, 0].detach().cpu() for level in final]
            lay = [(wt[r : r + 1].detach().cpu(), b[r : r + 1].detach().cpu()) for wt, b in layers]
            context = (
                [
                    grid_context.quantize(ctx_weights[r, lv], ctx_spreads[r, lv], torch.exp(log_scale[r, lv]))
                    for lv in range(shape.levels)
                ]
                if settings.context
                else None
            )
            fits.append(GridFit(lat, lay, context, box_levels[i], settings.steps + extra[i]))
        learned = WarmStart(
            [(wt.detach().mean(0, keepdim=True).cpu(), b.detach().mean(0, keepdim=True).cpu()) for wt, b in layers],
            log_scale.detach().mean(0).cpu(),
            ctx_weights.detach().mean(0).cpu(),
            ctx_spreads.detach().mean(0).cpu(),
            log_weight.mean(0).cpu(),
        )
    return fits, learned


@dataclass(frozen=True)
class _Problem:
    """What a fitting step reads but does not train: the frames, their regions and masks, a scene's base."""

    image: torch.Tensor  # [B, 3, H, W]
    regions: tuple[torch.Tensor, ...]  # in boxes, outside, box-margin ring: [B, 1, H, W] each
    n_px: torch.Tensor  # [B, region]
    masks: list[torch.Tensor]  # per level: in boxes [B, 1, h, w]
    exists: list[torch.Tensor]  # per level: where latents are coded [B, 1, h, w]
    base_lat: list[torch.Tensor] | None  # a scene's latents per level, or None
    steps: list[tuple[torch.Tensor | None, torch.Tensor | None]]  # a scene's synthesis steps per layer
    anchors: list[tuple[torch.Tensor, torch.Tensor]]  # a scene's synthesis and its step, per trained tensor
    context: bool
    weight_bits: int
    # `render_dense`'s resampling weights per level, or None: differentiate the decoder's `render` (the reference).
    # Tensors, not a renderer object: a compiled step is reused by every call with the same shapes.
    matrices: list[tuple[torch.Tensor, torch.Tensor] | None] | None
    low: torch.dtype | None = None  # the render's autocast dtype (None: float32 throughout)


def _step_loss(
    p: _Problem,
    latents: list[torch.Tensor],
    layers: Layers,
    log_scale: torch.Tensor,
    ctx_weights: torch.Tensor,
    ctx_spreads: torch.Tensor,
    log_scale_syn: torch.Tensor,
    log_weight: torch.Tensor,
    noise: list[torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's loss (bits per pixel plus weighted region MSEs, summed over frames) and the region MSEs [B, 3].

    `noise`: uniform noise for the latents and then a scene's synthesis differences (the noisy phase), or None
    (straight-through rounding and fake-quantised synthesis).
    """
    count = p.image.shape[0]
    h, w = p.image.shape[2:]
    noisy = noise is not None
    q = [_quantize(lat, noise[i] if noisy else None) * e for i, (lat, e) in enumerate(zip(latents, p.exists))]
    synth = (
        layers
        if noisy
        else [
            (fake_quantize(wt, p.weight_bits, sw), fake_quantize(b, p.weight_bits, sb))
            for (wt, b), (sw, sb) in zip(layers, p.steps)
        ]
    )
    feats = q if p.base_lat is None else [b + d for b, d in zip(p.base_lat, q)]
    rows = _rows(synth, count)
    low = contextlib.nullcontext() if p.low is None else torch.autocast(p.image.device.type, dtype=p.low)
    with low:
        out = render(rows, feats, h, w) if p.matrices is None else render_dense(rows, feats, h, w, p.matrices)
    err = ((out.float() - p.image) ** 2).mean(dim=1, keepdim=True)
    mse = torch.stack([(err * r).sum(dim=(1, 2, 3)) for r in p.regions], dim=1) / p.n_px.clamp_min(1)
    bits = torch.zeros(count, device=p.image.device)
    scales, c_weights, c_spreads = (t.expand(count, *t.shape[1:]) for t in (log_scale, ctx_weights, ctx_spreads))
    levels = len(q)
    for lv, (lat, m, e) in enumerate(zip(q, p.masks, p.exists)):
        sc = torch.exp(scales[:, lv])  # [B, pass, region (in boxes, outside)]
        # Only latents that exist are coded: the known zeros off the boxes of box-only levels cost nothing.
        if p.context:
            f = grid_context.features(lat[:, 0], q[lv + 1][:, 0] if lv + 1 < levels else None)
            mean, per = grid_context.distribution(f, m[:, 0], c_weights[:, lv], c_spreads[:, lv], sc)
            bits = bits + (laplace_bits(lat[:, 0], per, mean) * e[:, 0]).sum(dim=(1, 2))
        else:
            per = sc[:, 0, 0, None, None, None] * m + sc[:, 0, 1, None, None, None] * (1 - m)
            bits = bits + (laplace_bits(lat, per) * e).sum(dim=(1, 2, 3))
    trainable = [t for pair in layers for t in pair]
    for k, (tensor, (anchor, step_size)) in enumerate(zip(trainable, p.anchors)):
        u = noise[levels + k] if noisy else None
        diff = _quantize((tensor - anchor) / step_size.view(-1, 1, 1), u)
        bits = bits + laplace_bits(diff, torch.exp(log_scale_syn[:, k]).view(-1, 1, 1)).sum(dim=(1, 2))
    weight = torch.exp(log_weight) * (p.n_px > 0)
    return (bits / (h * w) + (weight * mse).sum(dim=1)).sum(), mse


def check_compile(mode: str) -> None:
    """Raise ValueError unless `mode` is one of COMPILE_MODES."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")


def check_precision(mode: str) -> None:
    """Raise ValueError unless `mode` is one of PRECISIONS."""
    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {mode!r}")


def cpu_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 products in hardware (AVX512-BF16 or AMX)."""
    # torch.cpu's probes are private (no public one exists); a torch without them counts as no native support.
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(probe is not None and probe() for probe in probes)


def render_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a fitting step's render for precision `mode` on `device` (None: float32)."""
    check_precision(mode)
    if mode == "auto":
        return torch.bfloat16 if device.type == "cpu" and cpu_bfloat16() else None
    return torch.bfloat16 if mode == "bfloat16" else None


def _use_compile(mode: str, pixels: int) -> bool:
    check_compile(mode)
    # RINR_COMPILE=0 turns "auto" off (as RINR_FUSED=0 does the fused decoder): for short runs such as test suites,
    # where minutes of compiling would outweigh the fit.
    auto = mode == "auto" and pixels >= COMPILE_PIXELS and os.environ.get("RINR_COMPILE", "1") != "0"
    return mode == "on" or auto


class _CompiledLoss:
    """`_step_loss` under torch.compile (one graph per phase and frame size); the eager function is the reference.

    Where compiling fails (no C++ compiler for inductor on a CPU, an unsupported backend), the fit warns once and goes
    on eagerly: the maths are the same, only slower. A failure is caught before the step's backward, so no state moved.
    """

    def __init__(self) -> None:
        self.fn: Callable[..., Any] | None = torch.compile(_step_loss, dynamic=False)
        # A run meets a graph per phase and batch shape (sample, full and last batches, scenes, frame sizes): more
        # than dynamo's default limit of 8, past which it falls back to eager. Raised, never lowered, process-wide
        # (a per-call patch would race between the encoder's fitting threads).
        limits = torch._dynamo.config
        limits.recompile_limit = max(limits.recompile_limit, RECOMPILE_LIMIT)

    def __call__(self, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fn is not None:
            try:
                return self.fn(*args)
            except Exception as exc:  # noqa: BLE001 - any compiler failure; the eager call below re-raises real errors
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # inductor's errors run long
                warnings.warn(f"torch.compile of the fitting step failed, fitting eagerly: {first}", stacklevel=2)
                self.fn = None
        return _step_loss(*args)


def _top_up(
    per_frame: list[torch.Tensor],
    opt: torch.optim.Optimizer,
    gradients: Callable[[list[torch.Tensor] | None], torch.Tensor],
    update: Callable[[torch.Tensor], None],
    floor: torch.Tensor,
    limit: int,
    on_step: Callable[[int], None] | None,
) -> list[int]:
    """Up to `limit` more steps (rounded phase, final learning rate) while some frame is below `floor` [B, 3] (dB);
    returns the extra steps each frame's result took.

    `per_frame`: every tensor with a row per frame. Each frame ends as it was at the first step it measured at or
    above its floor (a frame already there when the budget ended is left exactly as it was); a frame that never
    gets there keeps where the extra steps took it.
    """
    for g in opt.param_groups:
        g["lr"] = g["base"] * LR_FLOOR
    count = per_frame[0].shape[0]
    kept = [t.detach().clone() for t in per_frame]
    settled = torch.zeros(count, dtype=torch.bool, device=per_frame[0].device)
    taken = torch.zeros(count, dtype=torch.long, device=settled.device)
    for extra in range(limit + 1):
        psnr = gradients(None)  # at the current state: it is kept, when it is the first to reach the floor
        newly = (psnr >= floor).all(dim=1) & ~settled
        if bool(newly.any()):
            with torch.no_grad():
                for t, k in zip(per_frame, kept):
                    k[newly] = t.detach()[newly]
            taken[newly] = extra
            settled |= newly
        if bool(settled.all()) or extra == limit:
            break
        update(psnr)
        if on_step is not None:
            on_step(int((~settled).sum()))
    taken[~settled] = limit
    with torch.no_grad():
        for t, k in zip(per_frame, kept):
            t[settled] = k[settled]
    return taken.tolist()


def _rows(layers: Layers, count: int) -> Layers:
    """Layers broadcast to `count` stacked frames (a shared synthesis has one row)."""
    return [(wt.expand(count, -1, -1), b.expand(count, -1, -1)) for wt, b in layers]


def _quantize(lat: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    if noise is not None:
        return lat + noise
    return lat + (torch.round(lat) - lat).detach()
