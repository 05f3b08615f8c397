"""Fit many SIRENs of one shape at once: stacked weights, random pixel subsets, Adam, per-INR early stop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ...core.fitting import PSNR_MARGIN, cosine_lr
from ...core.metrics import mse_to_psnr
from .siren import SirenShape, forward, grid_coords, init_params, render
from .weights import QuantizedINR, quantize_group, stack_params

LR_FLOOR = 0.1  # the learning rate decays to a tenth so the last steps polish rather than stall


@dataclass
class FitTarget:
    """What one INR must reproduce over an h x w grid.

    `values` [h*w, out] are in the INR's output domain; the image-domain error is `error_scale` times the output
    error (the residual scale Q for object INRs, 1 for backgrounds); PSNR is measured where `eval_mask` [h*w] is True.
    """

    height: int
    width: int
    values: torch.Tensor
    error_scale: float = 1.0
    eval_mask: torch.Tensor | None = None


@dataclass(frozen=True)
class FitSettings:
    """Optimisation and quantisation settings of one fitting call."""

    target_psnr: float
    max_steps: int
    lr: float
    pixels_per_step: int
    eval_every: int
    w0: float
    weight_bits: int
    first_layer_bits: int
    seed: int


@dataclass
class FitResult:
    """Quantised INR and the PSNR (dB, image domain, over eval_mask) its dequantised weights reach."""

    inr: QuantizedINR
    psnr: float
    steps: int


class _Group:
    """The INRs still being optimised: stacked parameters, their Adam state and their targets."""

    def __init__(self, shape: SirenShape, targets: list[FitTarget], settings: FitSettings, device: torch.device):
        gen = torch.Generator().manual_seed(settings.seed)
        self.params = [
            (w.to(device).requires_grad_(), b.to(device).requires_grad_())
            for w, b in init_params(shape, len(targets), settings.w0, gen)
        ]
        self.opt = torch.optim.Adam([t for pair in self.params for t in pair], lr=settings.lr)
        pmax = max(t.height * t.width for t in targets)
        out = targets[0].values.shape[-1]
        self.values = torch.zeros(len(targets), pmax, out, device=device)
        for i, t in enumerate(targets):
            self.values[i, : t.values.shape[0]] = t.values.to(device)
        self.heights = torch.tensor([t.height for t in targets], device=device)
        self.widths = torch.tensor([t.width for t in targets], device=device)
        self.ids = torch.arange(len(targets), device=device)

    def keep(self, mask: torch.Tensor) -> None:
        """Drop INRs where mask is False, slicing parameters and Adam moments alike."""
        old = [t for pair in self.params for t in pair]
        new = [t.detach()[mask].clone().requires_grad_() for t in old]
        opt = torch.optim.Adam(new, lr=self.opt.param_groups[0]["lr"])
        for o, n in zip(old, new):
            state = self.opt.state.get(o)
            if state:
                opt.state[n] = {k: (v[mask].clone() if k != "step" else v.clone()) for k, v in state.items()}
        self.params = [(new[i], new[i + 1]) for i in range(0, len(new), 2)]
        self.opt = opt
        self.values, self.heights, self.widths, self.ids = (
            self.values[mask],
            self.heights[mask],
            self.widths[mask],
            self.ids[mask],
        )


def fit_sirens(
    shape: SirenShape,
    targets: list[FitTarget],
    settings: FitSettings,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
) -> list[FitResult]:
    """Train one SIREN per target together; each stops once its quantised PSNR reaches the target."""
    if not targets:
        return []
    device = torch.device(device)
    group = _Group(shape, targets, settings, device)
    sampler = torch.Generator(device=device).manual_seed(settings.seed + 1)
    sizes = [(t.height, t.width) for t in targets]
    best: list[FitResult | None] = [None] * len(targets)
    for step in range(settings.max_steps):
        for g in group.opt.param_groups:
            g["lr"] = cosine_lr(step, settings.max_steps, settings.lr, LR_FLOOR)
        n_pixels = group.heights * group.widths
        k = min(settings.pixels_per_step, int(n_pixels.max()))
        u = torch.rand(len(group.ids), k, generator=sampler, device=device)
        idx = (u * n_pixels[:, None]).long().minimum(n_pixels[:, None] - 1)
        coords = grid_coords(group.heights[:, None], group.widths[:, None], idx)
        target = group.values.gather(1, idx[..., None].expand(-1, -1, group.values.shape[-1]))
        # Summing per-INR means keeps each INR's gradient independent of how many share the group.
        loss = ((forward(group.params, coords, settings.w0) - target) ** 2).mean(dim=(1, 2)).sum()
        group.opt.zero_grad(set_to_none=True)
        loss.backward()
        group.opt.step()
        if on_step is not None:
            on_step(len(group.ids))
        last = step == settings.max_steps - 1
        if (step + 1) % settings.eval_every and not last:
            continue
        done = _evaluate(group, shape, targets, sizes, settings, best, step + 1)
        if last or bool(done.all()):
            break
        if bool(done.any()):
            group.keep(~done)
    return [b for b in best if b is not None]


@torch.no_grad()
def _evaluate(
    group: _Group,
    shape: SirenShape,
    targets: list[FitTarget],
    sizes: list[tuple[int, int]],
    settings: FitSettings,
    best: list[FitResult | None],
    steps: int,
) -> torch.Tensor:
    """Quantise the active INRs, measure their PSNR, keep each one's best; returns which reached the target."""
    detached = [(w.detach(), b.detach()) for w, b in group.params]
    quantized = quantize_group(shape, detached, settings.weight_bits, settings.first_layer_bits)
    ids = group.ids.tolist()
    recon = render(stack_params(quantized, group.values.device), [sizes[i] for i in ids], settings.w0)
    done = torch.zeros(len(ids), dtype=torch.bool)
    for j, (i, inr, out) in enumerate(zip(ids, quantized, recon)):
        t = targets[i]
        err = (out - t.values.to(out.device)) ** 2
        if t.eval_mask is not None and bool(t.eval_mask.any()):
            err = err[t.eval_mask.to(out.device)]
        value = mse_to_psnr(float(err.mean()) * t.error_scale**2)
        if best[i] is None or value > best[i].psnr:
            best[i] = FitResult(inr, value, steps)
        done[j] = value >= settings.target_psnr + PSNR_MARGIN
    return done.to(group.ids.device)
