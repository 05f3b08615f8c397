"""The fitting step under torch.compile against the eager step (the reference), and the fallback where it fails."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import smooth_frame

import rinr_data as R
from rinr_data.codecs.grid import fit as grid_fit
from rinr_data.codecs.grid.encoder import fit_settings
from rinr_data.core.frames import box_mask

CONFIG = R.GridConfig(max_steps=6, object_psnr=25.0, background_psnr=20.0)


def _targets() -> list[grid_fit.GridTarget]:
    out = []
    for seed, box in ((1, [4, 4, 18, 16]), (2, [10, 2, 30, 12])):
        frame = torch.from_numpy(smooth_frame(24, 32, seed=seed)).permute(2, 0, 1).float() / 255
        out.append(grid_fit.GridTarget(frame, box_mask(np.array([box], float), 24, 32), 25.0, 20.0))
    return out


def _fit(mode: str) -> list[grid_fit.GridFit]:
    # 6 steps, the first 3 noisy: both of the step's graphs (noise, then rounding and fake-quantised weights) run.
    settings = dataclasses.replace(fit_settings(CONFIG), compile=mode)
    return grid_fit.fit_grids(CONFIG.grid, _targets(), settings)


def test_compiled_fit_matches_the_eager_fit():
    eager, compiled = _fit("off"), _fit("on")
    for a, b in zip(eager, compiled):
        for la, lb in zip(a.latents, b.latents):
            # Integer latents: float sums fused in another order may tip a rounding, never more than one step.
            assert (la - lb).abs().max() <= 1 and (la != lb).float().mean() < 0.01
        for (wa, ba), (wb, bb) in zip(a.layers, b.layers):
            assert torch.allclose(wa, wb, atol=1e-4) and torch.allclose(ba, bb, atol=1e-4)
    # Deterministic for a seed, compiled as eagerly; and a second call of the same shapes reuses the compiled step.
    with torch._dynamo.config.patch(error_on_recompile=True):
        again = _fit("on")
    assert all(torch.equal(x, y) for a, b in zip(compiled, again) for x, y in zip(a.latents, b.latents))


def test_a_compiler_failure_falls_back_to_the_eager_fit(monkeypatch):
    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(grid_fit.torch, "compile", broken)
    with pytest.warns(UserWarning, match="fitting eagerly: no C\\+\\+ compiler"):
        fallback = _fit("on")
    eager = _fit("off")
    assert all(torch.equal(x, y) for a, b in zip(eager, fallback) for x, y in zip(a.latents, b.latents))


def test_auto_compiles_large_frames_only_and_modes_are_checked(monkeypatch):
    monkeypatch.setenv("RINR_COMPILE", "1")
    assert not grid_fit._use_compile("auto", 255 * 256) and grid_fit._use_compile("auto", 256 * 256)
    monkeypatch.setenv("RINR_COMPILE", "0")  # what the test suite runs with (conftest.py)
    assert not grid_fit._use_compile("auto", 256 * 256) and grid_fit._use_compile("on", 256 * 256)
    monkeypatch.setenv("RINR_COMPILE", "1")
    assert grid_fit._use_compile("on", 1) and not grid_fit._use_compile("off", 10**7)
    with pytest.raises(ValueError, match="compile must be one of"):
        grid_fit._use_compile("fast", 1)
    with pytest.raises(ValueError, match="compile must be one of"):
        R.GridConfig(compile="fast")


@pytest.mark.parametrize("compiled", [False, True])
def test_the_fit_quantises_the_synthesis_with_the_records_float16_steps(compiled):
    from rinr_data.codecs.grid.record import quantize_synthesis
    from rinr_data.format.quantize import f16_scale, f16_steps

    rng = np.random.default_rng(0)
    mags = np.concatenate([10 ** rng.uniform(-12, 3, 3000), [0.0, 1e-9, 1e-8, 127 * 2.0**-14, 127 * 2.0**-24, 1.0]])
    max_abs = torch.tensor(mags, dtype=torch.float32)
    steps = (torch.compile(f16_steps, dynamic=False) if compiled else f16_steps)(max_abs, 127)
    assert steps.tolist() == [f16_scale(float(m), 127) for m in max_abs]
    # The weights a fit measures are bit for bit those its record ships (a float32 step rounded some the other way).
    for fit in _fit("on" if compiled else "off"):
        quantize = torch.compile(grid_fit.fake_quantize, dynamic=False) if compiled else grid_fit.fake_quantize
        shipped = quantize_synthesis(fit.layers, CONFIG.weight_bits)
        measured = [quantize(t, CONFIG.weight_bits) for pair in fit.layers for t in pair]
        assert all(torch.equal(q.dequantize(), m.reshape(-1)) for q, m in zip(shipped, measured))
