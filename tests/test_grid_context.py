"""The checkerboard context model of latent levels: causality, exactness, bits saved, record layout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import rinr_data as R
from rinr_data.codecs.grid import context as grid_context
from rinr_data.codecs.grid import record as grid_record
from rinr_data.codecs.grid.context import LevelContext
from rinr_data.codecs.grid.model import GridShape
from rinr_data.format import entropy
from rinr_data.format.quantize import QuantizedTensor


def _smooth_latents(shape: GridShape, height: int, width: int, seed: int) -> list[np.ndarray]:
    """Spatially correlated integer latents: a random field blurred, then rounded (what fitted grids look like)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for h, w in shape.level_sizes(height, width):
        field = torch.randn(1, 1, h, w, generator=gen) * 20
        blurred = torch.nn.functional.avg_pool2d(field, 5, 1, 2, count_include_pad=False)
        out.append(torch.round(blurred[0, 0]).numpy().astype(np.int32))
    return out


def _record(
    latents: list[np.ndarray], shape: GridShape, context: list[LevelContext] | None, boxes: list | None = None
) -> grid_record.GridRecord:
    rng = np.random.default_rng(3)
    ints = [
        np.round(rng.normal(0, 30, n)).clip(-127, 127).astype(np.int32)
        for fi, fo in shape.layer_dims()
        for n in (fi * fo, fo)
    ]
    synthesis = [QuantizedTensor(v, 0.0078125, 8) for v in ints]
    h, w = latents[0].shape
    return grid_record.GridRecord(h, w, shape, 8, boxes or [(1.0, 2.0, 6.5, 9.0)], latents, synthesis, context=context)


def _neighbour_context(levels: int) -> list[LevelContext]:
    scales = np.array([[3.0, 3.0], [1.0, 1.5]], np.float16)  # anchors see little, the others four neighbours
    return [
        LevelContext(scales, np.array([0, 16, 16, 16, 16, 0], np.int8), np.array([0, 2], np.int8))
        for _ in range(levels)
    ]


def test_non_anchor_features_see_only_anchors():
    level = torch.arange(1.0, 36.0).view(1, 5, 7)
    coarser = torch.arange(1.0, 13.0).view(1, 3, 4)
    anchor = grid_context.anchors(5, 7)
    full = grid_context.features(level, coarser)
    anchors_only = grid_context.features(torch.where(anchor, level, torch.zeros(())), coarser)
    assert torch.equal(full[:, :, ~anchor], anchors_only[:, :, ~anchor])  # what a decoder sees after pass one
    assert torch.equal(full[:, 4], coarser.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :5, :7])
    assert full[0, 0, 0, 3] == 0 and full[0, 1, 1, 3] == level[0, 2, 3]  # zero padding; "down" neighbour


def test_models_are_exact_dyadic_numbers():
    shape = GridShape(levels=3, hidden=(4,))
    latents = _smooth_latents(shape, 13, 17, seed=1)
    masks = [np.zeros(s, bool) for s in shape.level_sizes(13, 17)]
    for _lv, values, means, scales in grid_context.models(latents, masks, _neighbour_context(3), [40] * 3, [None] * 3):
        assert np.array_equal(means * 64, np.round(means * 64))  # weights are multiples of 1/64
        assert np.array_equal(scales * 64, np.round(scales * 64))  # f16 base + (k / 64) * integer
        assert len(values) == len(means) == len(scales)


@pytest.mark.parametrize("top", [False, True])
def test_pass_models_are_the_training_model_where_they_are_evaluated(top):
    shape = GridShape(levels=3, hidden=(4,))
    latents = _smooth_latents(shape, 13, 17, seed=6)
    level, coarser = latents[0], None if top else latents[1]
    rng = np.random.default_rng(0)
    ctx = LevelContext(
        np.array([[0.7, 2.5], [0.3, 1.25]], np.float16),
        rng.integers(-127, 128, 6).astype(np.int8),
        rng.integers(0, 40, 2).astype(np.int8),
    )
    mask = np.zeros(level.shape, bool)
    mask[2:8, 3:11] = True
    bound = 6  # small enough that some means are clamped

    def as64(a):
        return torch.from_numpy(np.asarray(a, np.float64))[None]

    mean, scale = grid_context.distribution(
        grid_context.features(as64(level), None if coarser is None else as64(coarser)),
        torch.from_numpy(mask)[None],
        as64(ctx.weights) / 64,
        as64(ctx.spreads) / 64,
        as64(ctx.scales.astype(np.float64)),
    )
    mean, scale = mean[0].clamp(-bound, bound).numpy(), scale[0].clamp_min(entropy.MIN_LAPLACE_SCALE).numpy()
    assert np.abs(mean).max() == bound
    decoded = np.zeros_like(level)  # what a decoder holds: anchors known before the second pass, nothing else
    for first, (rows, cols) in zip((True, False), grid_context.pass_positions(level.shape, None)):
        m, s = grid_context.pass_models(decoded, coarser, mask, ctx, bound, rows, cols, first)
        assert np.array_equal(m, mean[rows, cols]) and np.array_equal(s, scale[rows, cols])
        decoded[rows, cols] = level[rows, cols]


@pytest.mark.parametrize("boxes", [None, [(0.0, 0.0, 40.0, 30.0)], [(3.0, 4.0, 20.5, 17.0), (22.0, 1.0, 39.0, 9.0)]])
def test_context_records_round_trip_and_beat_factorized_on_correlated_latents(boxes):
    shape = GridShape(levels=4, hidden=(4,))
    latents = _smooth_latents(shape, 30, 40, seed=2)
    with_context = R.pack_record(_record(latents, shape, _neighbour_context(4), boxes))
    plain = R.pack_record(_record(latents, shape, None, boxes))
    parsed = R.unpack_record(with_context)
    assert all(np.array_equal(a, b) for a, b in zip(parsed.latents, latents))
    assert parsed.context is not None and R.pack_record(parsed) == with_context
    assert R.unpack_record(plain).context is None
    assert len(with_context) < 0.95 * len(plain)
    assert torch.equal(R.decode(with_context), R.decode(plain))  # the context changes bits, never pixels


def test_zero_context_codes_like_one_scale_per_region():
    shape = GridShape(levels=3, hidden=(4,))
    latents = _smooth_latents(shape, 12, 16, seed=4)
    flat = [LevelContext(np.full((2, 2), 2.0, np.float16), np.zeros(6, np.int8), np.zeros(2, np.int8))] * 3
    masks = [np.zeros(s, bool) for s in shape.level_sizes(12, 16)]
    for _lv, _values, means, scales in grid_context.models(latents, masks, flat, [30] * 3, [None] * 3):
        assert not means.any() and np.all(scales == 2.0)


def test_fitting_with_context_writes_context_records():
    frame = np.zeros((16, 24, 3), np.uint8)
    frame[:, :, 0] = np.linspace(0, 255, 24, dtype=np.uint8)[None]
    config = R.GridConfig(max_steps=60, object_psnr=24.0, background_psnr=20.0)
    rec = R.unpack_record(R.encode(frame, [[2, 2, 10, 9]], config))
    assert rec.context is not None and len(rec.context) == config.grid.levels
    from rinr_data.codecs.grid import fit as grid_fit

    settings = grid_fit.GridFitSettings(steps=5, lr=0.03, weight_bits=8, seed=0, context=False)
    target = grid_fit.GridTarget(torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.bool), 25.0, 20.0)
    assert grid_fit.fit_grids(GridShape(2, (4,)), [target], settings)[0].context is None
    assert dataclasses.replace(settings, context=True).context


def test_laplace_bits_with_a_mean_match_the_coder():
    rng = np.random.default_rng(5)
    values = np.round(rng.laplace(0, 2.0, 3000)).astype(np.int32)
    means = np.clip(values + rng.normal(0, 0.7, 3000), -20, 20)
    scales = np.full(3000, 0.9)
    data = entropy.laplace_compress([(values, scales, 40, means)])
    reader = entropy.LaplaceReader(data)
    assert np.array_equal(reader.read(scales, 40, means), values)
    reader.finish()
    estimate = float(
        entropy.laplace_bits(torch.tensor(values, dtype=torch.float64), torch.tensor(scales), torch.tensor(means)).sum()
    )
    assert abs(len(data) * 8 - estimate) < 0.02 * estimate + 64
    plain = entropy.laplace_compress([(values, np.full(3000, entropy.laplace_scale(values)), 40)])
    assert len(data) < 0.7 * len(plain)
