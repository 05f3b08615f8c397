"""Warm starts of the grid codec: learned on a sample with one shared synthesis, saved without pickles, and fits
that start from them; through rinr-encode: learned once, saved, reused on resume, the same records on re-run."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_datasets import (
    one_torch_thread,  # noqa: F401 - autouse fixture
    write_coco,
)

from rinr_data import shards
from rinr_data.codecs import GridConfig
from rinr_data.codecs.grid import CODEC, encoder, warm
from rinr_data.codecs.grid import fit as grid_fit
from rinr_data.codecs.grid.fit import GridFitSettings, fit_ended, fit_grids
from rinr_data.codecs.grid.model import GridShape, render
from rinr_data.convert import WARM_FILE, ConvertConfig, encode_dataset
from rinr_data.sources import open_source

SHAPE = GridShape(levels=4, hidden=(8,), box_levels=1)
CONFIG = GridConfig(grid=SHAPE, max_steps=150, warm_steps=40, object_psnr=30.0, background_psnr=24.0)


@pytest.fixture(scope="module")
def small_frames(vtest_frames):
    """The committed real frames at 96x72 with their boxes scaled alike."""
    images, boxes = vtest_frames
    out_images, out_boxes = [], []
    for image, bx in zip(images, boxes):
        h, w = image.shape[:2]
        out_images.append(np.asarray(Image.fromarray(image).resize((96, 72), Image.BILINEAR)))
        out_boxes.append(np.asarray(bx, np.float64).reshape(-1, 4) * [96 / w, 72 / h, 96 / w, 72 / h])
    return out_images, out_boxes


@pytest.fixture(scope="module")
def learned(small_frames):
    images, boxes = small_frames
    return CODEC.learn_warm_start(images[:2], boxes[:2], CONFIG)


def _targets(images, boxes, config=CONFIG):
    frames, bx = encoder._prepare(images, boxes)
    return encoder._targets(frames, bx, config)


def test_a_shared_fit_gives_every_frame_one_synthesis_and_context_model(small_frames):
    images, boxes = small_frames
    settings = GridFitSettings(steps=40, lr=0.03, weight_bits=8, seed=0, shared=True)
    fits, state = fit_ended(SHAPE, _targets(images[:2], boxes[:2]), settings)
    for (wa, ba), (wb, bb) in zip(fits[0].layers, fits[1].layers):
        assert torch.equal(wa, wb) and torch.equal(ba, bb)
    for a, b in zip(fits[0].context, fits[1].context):
        assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("scales", "weights", "spreads"))
    assert not torch.equal(fits[0].latents[-1], fits[1].latents[-1])  # each frame keeps its own latents
    for (w, b), (ws, bs) in zip(fits[0].layers, state.layers):
        assert torch.equal(w, ws) and torch.equal(b, bs)
    with pytest.raises(ValueError, match="one size"):
        fit_ended(SHAPE, _targets([images[0], images[1][:64]], boxes[:2]), settings)


def test_the_analysis_predicts_the_sample_latents(small_frames, learned):
    images, boxes = small_frames
    settings = GridFitSettings(steps=150, lr=0.03, weight_bits=8, seed=0, shared=True)
    targets = _targets(images[:2], boxes[:2])
    fits, _ = fit_ended(SHAPE, targets, settings)
    sizes = SHAPE.level_sizes(72, 96)
    coarse = SHAPE.levels - 1  # coded everywhere on every frame
    for t, fit in zip(targets, fits):
        predicted = warm.initial_latents(learned.analysis, t.image, sizes)[coarse]
        actual = fit.latents[coarse].float()
        # Explains most of what the fit found: far closer than the latents are to their own mean.
        assert (predicted - actual).pow(2).mean() < 0.5 * (actual - actual.mean()).pow(2).mean()


def test_a_warm_fit_starts_where_the_warm_start_says(small_frames, learned):
    images, boxes = small_frames
    still = GridFitSettings(steps=1, lr=0.0, weight_bits=8, seed=0, latent_lr=0.0, warm=learned)
    target = _targets(images[2:3], boxes[2:3])[0]
    fit = fit_grids(SHAPE, [target], still)[0]
    for (w, b), (ws, bs) in zip(fit.layers, learned.layers):
        assert torch.equal(w, ws) and torch.equal(b, bs)
    expected = warm.initial_latents(learned.analysis, target.image, SHAPE.level_sizes(72, 96))
    for lv in range(fit.box_levels, SHAPE.levels):
        assert torch.equal(fit.latents[lv], torch.round(expected[lv]))
    assert learned.log_weight.min() >= np.log(150.0) - 1e-5  # never below where a fit from scratch starts


def test_warm_fits_reach_more_in_the_same_steps(small_frames, learned):
    images, boxes = small_frames
    held_out = images[2:4], boxes[2:4]  # not in the warm start's sample
    cold = CODEC.encode(*held_out, CONFIG.replace(max_steps=CONFIG.warm_steps))
    hot = CODEC.encode(*held_out, CONFIG.replace(warm=learned))
    # The budget, plus up to a third more for a frame still below a target.
    assert all(CONFIG.warm_steps <= f.steps["grid"] <= CONFIG.warm_steps * 4 // 3 for f in hot)
    gain = np.mean([h.full_psnr - c.full_psnr for h, c in zip(hot, cold)])
    assert gain > 1.0, gain


def test_a_warm_start_round_trips_without_pickles_and_is_checked(tmp_path, learned):
    path = warm.write(tmp_path / "w.npz", learned, {"settings": {"a": 1}})
    back, meta = warm.read(path, SHAPE)
    assert meta == {"version": warm.FORMAT_VERSION, "settings": {"a": 1}}
    for name in ("log_scale", "ctx_weights", "ctx_spreads", "log_weight", "analysis"):
        assert torch.equal(getattr(back, name), getattr(learned, name))
    with pytest.raises(ValueError, match="does not fit grid"):
        warm.read(path, dataclasses.replace(SHAPE, hidden=(16,)))
    with pytest.raises(ValueError, match="not a warm start"):
        warm.WarmStart.from_bytes(b"PK\x03\x04 damaged", SHAPE)
    pickled = io.BytesIO()
    np.savez(pickled, meta=np.array([{"version": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a warm start"):
        warm.WarmStart.from_bytes(pickled.getvalue(), SHAPE)
    with pytest.raises(ValueError, match="ctx_weights"):
        CONFIG.replace(warm=dataclasses.replace(learned, ctx_weights=learned.ctx_weights[:, :2]))
    bad = dataclasses.replace(learned, log_weight=torch.tensor([1.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="finite"):
        CONFIG.replace(warm=bad)
    assert CODEC.read_warm_start(path, CONFIG, {"settings": {"a": 2}}) is None  # learned with other settings
    assert CODEC.read_warm_start(path, CONFIG, {"settings": {"a": 1}}) is not None
    assert "warm" not in CONFIG.replace(warm=learned).settings()
    assert CONFIG.replace(warm=learned).settings() == CONFIG.settings()


def test_rinr_encode_learns_the_warm_start_once_and_reuses_it(tmp_path, monkeypatch):
    source = open_source(write_coco(tmp_path / "src"))
    config = ConvertConfig(codec_config=GridConfig(max_steps=12, warm_frames=2, warm_steps=5), shard_size=2, batch=2)
    whole = encode_dataset(source, tmp_path / "a", config, progress=False)
    saved = shards.work_dir(tmp_path / "a") / WARM_FILE
    assert saved.is_file() and whole.samples == 3
    again = encode_dataset(source, tmp_path / "b", config, progress=False)
    assert again.samples == 3
    assert saved.read_bytes() == (shards.work_dir(tmp_path / "b") / WARM_FILE).read_bytes()  # deterministic
    for p in sorted((tmp_path / "a").glob("*.tar")):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes()

    # A resumed run reads the saved warm start instead of learning it again.
    (tmp_path / "a" / "shard-000001.tar").unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("learned the warm start again")

    monkeypatch.setattr(type(CODEC), "learn_warm_start", refuse)
    resumed = encode_dataset(source, tmp_path / "a", config, progress=False)
    assert resumed.written == ["shard-000001.tar"]
    assert (tmp_path / "a" / "shard-000001.tar").read_bytes() == (tmp_path / "b" / "shard-000001.tar").read_bytes()


def test_warm_frames_zero_fits_every_frame_from_scratch(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("no warm start was asked for")

    monkeypatch.setattr(type(CODEC), "learn_warm_start", refuse)
    source = open_source(write_coco(tmp_path / "src"))
    config = ConvertConfig(codec_config=GridConfig(max_steps=7, warm_frames=0), shard_size=3, batch=3)
    assert encode_dataset(source, tmp_path / "out", config, progress=False).samples == 3
    assert not (shards.work_dir(tmp_path / "out") / WARM_FILE).exists()
    with pytest.raises(ValueError, match="warm_frames"):
        GridConfig(warm_frames=-1)
    with pytest.raises(ValueError, match="warm_steps"):
        GridConfig(warm_steps=0)


def test_the_front_door_warms_a_config_up(small_frames):
    import rinr_data as R
    from rinr_data.codecs import PaperConfig

    images, boxes = small_frames
    config = CONFIG.replace(max_steps=20, warm_steps=5)
    warmed = R.warm_up(images[:2], boxes[:2], config)
    assert warmed.warm is not None and warmed.settings() == config.settings()
    blob = R.encode_batch(images[2:3], boxes[2:3], warmed)[0]
    assert tuple(R.decode(blob).shape) == (3, 72, 96)
    paper = PaperConfig(max_steps=2)
    assert R.warm_up(images[:1], boxes[:1], paper) is paper


def test_rinr_encode_flags_set_the_warm_start():
    from rinr_data.cli.encode import build_config, build_parser

    config = build_config(build_parser().parse_args(["src", "out", "--warm-frames", "3", "--warm-steps", "50"]))
    assert (config.codec_config.warm_frames, config.codec_config.warm_steps, config.batch) == (3, 50, 4)
    assert "--warm-frames" in build_parser().format_help()
    with pytest.raises(ValueError, match="warm_frames"):
        build_config(build_parser().parse_args(["src", "out", "--warm-frames", "-1"]))


def test_top_up_keeps_each_frame_as_it_first_reached_its_floor():
    # Three frames whose PSNR is their single value; every update adds 0.5, 1 and 1 dB to them.
    value = torch.tensor([[5.0], [3.0], [0.0]])
    floor = torch.tensor([[4.0] * 3, [4.5] * 3, [9.0] * 3])
    calls = []

    def gradients(noise):
        assert noise is None  # the rounded phase
        calls.append(value.clone())
        return value.expand(3, 3).clone()

    def update(psnr):
        value.add_(torch.tensor([[0.5], [1.0], [1.0]]))

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    opt.param_groups[0]["base"] = 1.0
    taken = grid_fit._top_up([value], opt, gradients, update, floor, limit=4, on_step=None)
    # Frame 0 was there at once and is left as it was; frame 1 reached 4.5 after 2 updates (5.0, kept, not the
    # 7.0 it went on to); frame 2 never reaches 9 in 4 updates and keeps where they took it.
    assert taken == [0, 2, 4]
    assert value[:, 0].tolist() == [5.0, 5.0, 4.0]
    assert len(calls) == 5 and opt.param_groups[0]["lr"] == pytest.approx(grid_fit.LR_FLOOR)


def test_a_warm_fit_tops_up_only_the_frames_below_a_target(small_frames, learned):
    images, boxes = small_frames
    targets = _targets(images[2:6], boxes[2:6], CONFIG.replace(object_psnr=33.0, background_psnr=26.0))
    short = GridFitSettings(steps=5, lr=0.03, weight_bits=8, seed=0, warm=learned, dual_step=0.008)
    plain = fit_grids(SHAPE, targets, short)
    topped = fit_grids(SHAPE, targets, dataclasses.replace(short, top_up=40))
    assert [f.steps for f in plain] == [5] * 4
    assert all(5 <= f.steps <= 45 for f in topped) and any(f.steps > 5 for f in topped)
    for t, a, b in zip(targets, plain, topped):
        same = all(torch.equal(x, y) for x, y in zip(a.latents, b.latents))
        if b.steps == 5:  # at its targets when the budget ended: exactly the fit without a top-up
            assert same and all(torch.equal(x[0], y[0]) for x, y in zip(a.layers, b.layers))
        else:
            assert not same and _psnr(b, t) > _psnr(a, t)


def _psnr(fit, target) -> float:
    """The lower of a fit's object and background PSNR (dB), rendered in float."""
    h, w = target.image.shape[1:]
    out = render(fit.layers, [lat[None, None].float() for lat in fit.latents], h, w)[0].clamp(0, 1)
    err = ((out - target.image) ** 2).mean(dim=0)
    inside = target.box_mask
    return min(-10 * float(torch.log10(err[m].mean())) for m in (inside, ~inside) if m.any())
