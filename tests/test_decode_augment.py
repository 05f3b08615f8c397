"""Augmentation at decode time: latent-grid frames rendered through a sampling warp (flip, scale, crop/pad) against
decoding the whole frame and augmenting it with torchvision, boxes alike; the loader's use of it and its fallback."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from shard_fixtures import frames, quantized_inr, write_dataset
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from rinr_data.codecs.base import Warp, WarpedPacked
from rinr_data.codecs.grid import model
from rinr_data.codecs.grid.model import GridShape, init_layers
from rinr_data.codecs.grid.packing import PackedGrids
from rinr_data.codecs.paper.record import ObjectEntry, Record
from rinr_data.core.devices import TILE
from rinr_data.core.frames import to_uint8
from rinr_data.decode import PackedBatch, decode_packed, decode_packed_warped, pack_records, unpack
from rinr_data.pipeline import loader as loader_module
from rinr_data.pipeline.augment import (
    PAD_VALUE,
    AugmentConfig,
    Geometry,
    augment_batch,
    build_transform,
    draw_geometries,
    letterbox_size,
)
from rinr_data.pipeline.dataset import LoaderBatch, RINRDataset
from rinr_data.pipeline.loader import RINRLoader, letterbox

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")

CPU = torch.device("cpu")
RECORD = Path(__file__).parent / "data" / "records" / "grid-0.3.1.rinr"  # a fitted 96x128 crop of a real frame
GEOMETRIC_ONLY = dict(brightness=0.0, contrast=0.0, saturation=0.0)  # photometric steps off: pixels comparable
# Mean absolute error allowed, away from the frame's borders, between rendering through a scaling warp and resizing
# the decoded frame bicubically. The two differ because the MLP is nonlinear: resampling its features (here) is not
# resampling its output (there). Measured on the real record below: 0.76-0.90 uint8 levels for scales 0.6-1.4 (max
# 28-42 levels on the sharpest edges); flips, crops and pads are exact.
SCALE_MAE = 2 / 255


@pytest.fixture(scope="module")
def real() -> PackedGrids:
    group = pack_records([unpack(RECORD.read_bytes())]).groups[0]
    assert isinstance(group, PackedGrids) and (group.height, group.width) == (96, 128)
    return group


def _synthetic(height: int, width: int, count: int, seed: int = 0) -> PackedGrids:
    """Frames of random smooth-ish latents and random MLPs at a size whose levels are not powers of two apart."""
    shape = GridShape(levels=4, hidden=(8,))
    generator = torch.Generator().manual_seed(seed)
    latents = [torch.randn(count, 1, h, w, generator=generator) for h, w in shape.level_sizes(height, width)]
    return PackedGrids(shape, height, width, latents, init_layers(shape, count, generator, CPU), list(range(count)))


def _trio(real: PackedGrids) -> PackedGrids:
    """The real frame and two variants of it (mirrored latents, another MLP), stacked as one group."""
    latents = [torch.cat([t, t.flip(-1), t.flip(-2)]) for t in real.latents]
    layers = [(torch.cat([w, w, w.flip(-1)]), torch.cat([b, b, b.flip(-1)])) for w, b in real.layers]
    return PackedGrids(real.shape, real.height, real.width, latents, layers, [0, 1, 2])


def _reference(image: torch.Tensor, geometry: Geometry, mode=InterpolationMode.BICUBIC) -> torch.Tensor:
    """Decode-then-augment with torchvision's kernels: letterbox, flip, resize (antialias off), pad and crop."""
    size = geometry.size
    lh, lw = letterbox_size(tuple(image.shape[-2:]), size)
    if (lh, lw) != tuple(image.shape[-2:]):
        image = TF.resize(image, [lh, lw], interpolation=mode, antialias=False)
        image = TF.pad(image, [0, 0, size[1] - lw, size[0] - lh], fill=PAD_VALUE)
    if geometry.flip:
        image = TF.horizontal_flip(image)
    if geometry.scaled != tuple(size):
        image = TF.resize(image, list(geometry.scaled), interpolation=mode, antialias=False)
    (top, left), (sh, sw) = geometry.offset, geometry.scaled
    pad = [max(0, -left), max(0, -top), max(0, left + size[1] - sw), max(0, top + size[0] - sh)]
    image = TF.pad(image, pad, fill=PAD_VALUE)
    return TF.crop(image, top + pad[1], left + pad[0], size[0], size[1])


def _regions(warp: Warp, frame: tuple[int, int], margin: float = 3.0) -> tuple[torch.Tensor, ...]:
    """Output pixels showing a point at least `margin` source pixels inside the frame, those outside it, and those
    at least `margin` outside it."""
    rows, cols = warp.points()

    def within(low: float, high_pad: float) -> torch.Tensor:
        return ((rows >= low) & (rows <= frame[0] + high_pad))[:, None] & (
            (cols >= low) & (cols <= frame[1] + high_pad)
        )[None, :]

    return within(margin, -margin), ~within(0, 0), ~within(-margin, margin)


def _quantised(image: torch.Tensor) -> torch.Tensor:
    return to_uint8(image).float() / 255


# --- (a) the identity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["real", "odd"])
def test_identity_warp_renders_the_frame(real, which):
    group = _trio(real) if which == "real" else _synthetic(37, 53, 3)
    frame = (group.height, group.width)
    identity = Geometry.identity(frame).warp(frame)
    assert identity == Warp(frame)  # scale 1, offset 0 exactly: the pixel centres themselves
    want = torch.stack(group.render(CPU))
    got = torch.stack(group.render_warped(CPU, [identity] * 3, PAD_VALUE))
    assert got.shape == want.shape
    assert float((got - want).abs().max()) < 1e-5  # float rounding of the resampling only
    assert int((to_uint8(got).int() - to_uint8(want).int()).abs().max()) <= 1
    # Mirrored pixel centres are pixel centres too: a flipped render is the flipped frame.
    flipped = Geometry(frame, True, frame, (0, 0)).warp(frame)
    got = torch.stack(group.render_warped(CPU, [flipped] * 3, PAD_VALUE))
    assert float((got - want.flip(-1)).abs().max()) < 1e-5


# --- (b) pixels against decode-then-augment -----------------------------------------------------------------------

GEOMETRIES = {
    "flip": Geometry((96, 128), True, (96, 128), (0, 0)),
    "crop": Geometry((96, 128), False, (96, 128), (5, -7)),  # down 5 rows, padded 7 columns on the left
    "upscale": Geometry((96, 128), False, (134, 179), (20, 30)),
    "flip+downscale+pad": Geometry((96, 128), True, (57, 76), (-10, -30)),
    "downscale": Geometry((96, 128), False, (72, 96), (-12, -16)),
    "letterbox": Geometry((120, 200), False, (120, 200), (0, 0)),  # 96x128 into 120x200: x1.25, padded right
    "letterbox+flip+jitter": Geometry((120, 200), True, (100, 166), (-8, -20)),
}


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_geometry_at_decode_matches_decode_then_augment(real, name):
    geometry = GEOMETRIES[name]
    frame = (real.height, real.width)
    warp = geometry.warp(frame)
    got = _quantised(real.render_warped(CPU, [warp], PAD_VALUE)[0])
    want = _reference(_quantised(real.render(CPU)[0]), geometry).clamp(0, 1)
    assert got.shape == want.shape == (3, *geometry.size)
    inner, outside, far = _regions(warp, frame)
    # Pixels past the frame are the pad exactly; resampling a letterboxed canvas blends the pad's edge (`far` only).
    assert bool((got[:, outside] == PAD_VALUE).all()) and torch.allclose(
        want[:, far], torch.tensor(PAD_VALUE), atol=1e-6
    )
    error = (got - want).abs()[:, inner]
    if geometry.scaled == geometry.size and letterbox_size(frame, geometry.size) == frame:
        # Flips, crops and pads move whole pixels: the same values everywhere, to a uint8 level.
        assert float((got - want).abs().max()) <= 1 / 255 + 1e-6
    else:
        assert float(error.mean()) < SCALE_MAE, f"{name}: mean abs error {float(error.mean()) * 255:.2f} levels"


def test_resample_is_the_v2_steps_at_the_drawn_geometry():
    """The fallback (`Geometry.resample`) moves pixels exactly as today's RandomHorizontalFlip/ScaleJitter/RandomCrop
    would with those parameters."""
    image = torch.rand(3, 30, 40)
    for geometry in draw_geometries(AugmentConfig(flip=0.5, scale=(0.5, 1.8)), (30, 40), 12, seed=4):
        want = image
        if geometry.flip:
            want = TF.horizontal_flip(want)
        want = TF.resize(want, list(geometry.scaled), antialias=True)  # ScaleJitter's bilinear, antialiased
        (top, left), (sh, sw) = geometry.offset, geometry.scaled
        pad_w, pad_h = max(0, 40 - sw), max(0, 30 - sh)  # RandomCrop(pad_if_needed) pads both sides by the shortfall
        want = TF.pad(want, [pad_w, pad_h, pad_w, pad_h], fill=PAD_VALUE)
        want = TF.crop(want, top + pad_h, left + pad_w, 30, 40)
        assert torch.equal(geometry.resample(image), want)


# --- (c) boxes ----------------------------------------------------------------------------------------------------


def _torchvision_boxes(boxes, labels, frame, geometry):
    """Boxes through today's letterbox and torchvision's kernels at the same geometry, then SanitizeBoundingBoxes."""
    size = geometry.size
    canvas = torch.zeros(3, *frame)
    _, b = letterbox(canvas, boxes, size)
    b = tv_tensors.BoundingBoxes(b, format="XYXY", canvas_size=size)
    if geometry.flip:
        b = TF.horizontal_flip(b)
    if geometry.scaled != tuple(size):
        b = TF.resize(b, list(geometry.scaled))
    (top, left), (sh, sw) = geometry.offset, geometry.scaled
    pad = [max(0, -left), max(0, -top), max(0, left + size[1] - sw), max(0, top + size[0] - sh)]
    b = TF.crop(TF.pad(b, pad), top + pad[1], left + pad[0], size[0], size[1])
    out = v2.SanitizeBoundingBoxes(min_size=1.0)({"boxes": b, "labels": labels})
    return out["boxes"].as_subclass(torch.Tensor), out["labels"]


@pytest.mark.parametrize("frame", [(40, 56), (30, 70), (50, 30)])
def test_boxes_move_as_torchvision_moves_them(frame):
    size = (40, 56)
    rng = np.random.default_rng(sum(frame))
    config = AugmentConfig(flip=0.5, scale=(0.3, 2.0))
    for i, geometry in enumerate(draw_geometries(config, size, 40, seed=7)):
        corners = rng.uniform(-0.2, 1.2, (12, 2, 2)) * np.array([frame[1], frame[0]])
        boxes = torch.tensor(np.concatenate([corners.min(1), corners.max(1)], 1), dtype=torch.float32)
        boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([frame[1], frame[0]] * 2, dtype=torch.float32))
        boxes[0] = torch.tensor([3.0, 4.0, 3.6, 9.0])  # thinner than a pixel: dropped, with its label
        labels = torch.arange(len(boxes))
        got, got_labels = geometry.map_boxes(boxes, labels, frame)
        want, want_labels = _torchvision_boxes(boxes, labels, frame, geometry)
        assert torch.equal(got_labels, want_labels), f"geometry {i}: {geometry}"
        assert torch.allclose(got, want, atol=1e-4, rtol=0), f"geometry {i}: {geometry}"
        # Boxes the crop did not clip map back through the pixels' warp onto where they were in the frame.
        warp = geometry.warp(frame)
        kept = boxes[got_labels]
        whole = (got[:, 0] > 0) & (got[:, 1] > 0) & (got[:, 2] < size[1]) & (got[:, 3] < size[0])
        x = got[whole][:, [0, 2]].double() * warp.scale[1] + warp.offset[1]
        y = got[whole][:, [1, 3]].double() * warp.scale[0] + warp.offset[0]
        x = x.sort(dim=1).values  # a mirror swaps left and right
        back = torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1)
        assert torch.allclose(back.float(), kept[whole], atol=1e-3, rtol=0)


# --- (d) determinism ----------------------------------------------------------------------------------------------


def test_geometries_and_warped_renders_are_deterministic(real):
    config = AugmentConfig()
    first = draw_geometries(config, (96, 128), 16, seed=11)
    assert first == draw_geometries(config, (96, 128), 16, seed=11)
    assert first != draw_geometries(config, (96, 128), 16, seed=12)
    assert len({g.scaled for g in first}) > 8 and {g.flip for g in first} == {False, True}
    # A frame renders to the same bits alone or in a batch (tiles of its own), whatever warps its neighbours take.
    trio = _trio(real)
    warps = [g.warp((96, 128)) for g in first[:3]]
    together = trio.render_warped(CPU, warps, PAD_VALUE)
    for i, part in enumerate(trio.split()):
        assert torch.equal(part.render_warped(CPU, [warps[i]], PAD_VALUE)[0], together[i])


# --- (e) the loader -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode-augment")
    write_dataset(root / "rinr", count=9, shard_size=3)
    write_dataset(root / "jpeg", count=9, shard_size=3, codec="jpeg")
    return root


def _record_calls(monkeypatch) -> dict[str, list]:
    """Record the geometries the loader draws and which frames its decode warped."""
    seen: dict[str, list] = {"geometries": [], "warped": []}
    draw, decode = loader_module.draw_geometries, loader_module.decode_packed_warped

    def drawing(*args, **kwargs):
        out = draw(*args, **kwargs)
        seen["geometries"].append(out)
        return out

    def decoding(*args, **kwargs):
        images, warped = decode(*args, **kwargs)
        seen["warped"].append(warped)
        return images, warped

    monkeypatch.setattr(loader_module, "draw_geometries", drawing)
    monkeypatch.setattr(loader_module, "decode_packed_warped", decoding)
    return seen


def _whole_frames(folder) -> dict[str, torch.Tensor]:
    """Every sample decoded whole, not augmented, by key."""
    loader = RINRLoader(RINRDataset(folder, batch_size=9, shuffle=False, device="cpu"))
    return {k: img for batch in loader for k, img in zip(batch["keys"], batch["images"])}


@pytest.mark.parametrize("codec", ["rinr", "jpeg"])
def test_loader_applies_the_geometry_at_decode_or_after(shards, monkeypatch, codec):
    size = (24, 32)  # the 16x20 frames letterboxed x1.5: jitter below 1/1.5 renders fewer pixels, above it does not
    whole = _whole_frames(shards / codec)
    images, boxes = frames(9)
    source = {
        f"frame_{i:03d}": (torch.tensor(b, dtype=torch.float32).reshape(-1, 4), i % 2) for i, b in enumerate(boxes)
    }
    seen = _record_calls(monkeypatch)
    config = AugmentConfig(**{**GEOMETRIC_ONLY, "scale": (0.4, 1.6)})  # draws on both sides of 1/1.5
    loader = RINRLoader(
        RINRDataset(shards / codec, batch_size=3, seed=3, device="cpu"), image_size=size, augment=config
    )
    batches = list(loader)
    assert len(batches) == len(seen["geometries"]) == len(seen["warped"]) == 3
    warped_frames = 0
    for batch, geometries, warped in zip(batches, seen["geometries"], seen["warped"]):
        assert batch["images"].shape == (3, 3, *size) and batch["images"].dtype == torch.float32
        for key, image, target, geometry, done in zip(
            batch["keys"], batch["images"], batch["targets"], geometries, warped
        ):
            b, label = source[key]
            want_boxes, want_labels = geometry.map_boxes(b, torch.full((len(b),), label), (16, 20))
            assert torch.equal(target["boxes"].as_subclass(torch.Tensor), want_boxes)
            assert torch.equal(target["labels"], want_labels) and target["boxes"].canvas_size == size
            if len(want_boxes):
                assert float(want_boxes[:, 2:].sub(want_boxes[:, :2]).min()) >= 1
                assert float(want_boxes[:, 2].max()) <= size[1] and float(want_boxes[:, 3].max()) <= size[0]
            warp = geometry.warp((16, 20))
            assert done == (codec == "rinr" and warp.pixels((16, 20)) <= 16 * 20)
            if done:
                warped_frames += 1
                inner, outside, _ = _regions(warp, (16, 20), margin=2)
                assert bool((image[:, outside] == PAD_VALUE).all())
                error = (image - _reference(whole[key], geometry).clamp(0, 1)).abs()[:, inner]
                assert float(error.mean()) < SCALE_MAE
            else:  # decoded whole and resampled: exactly the v2 kernels on the letterboxed frame
                canvas = letterbox(whole[key], b, size)[0]
                assert torch.equal(image, geometry.resample(canvas).clamp(0, 1))
    assert (warped_frames > 0) == (codec == "rinr") and warped_frames < 9


def test_loader_without_at_decode_is_todays_pipeline(shards):
    size = (24, 32)
    config = AugmentConfig(at_decode=False)
    loader = RINRLoader(
        RINRDataset(shards / "rinr", batch_size=3, seed=3, device="cpu"), image_size=size, augment=config
    )
    plain = RINRLoader(RINRDataset(shards / "rinr", batch_size=3, seed=3, device="cpu"), image_size=size)
    for index, (got, base) in enumerate(zip(loader, plain)):
        # The letterboxed decode through the whole v2 pipeline, seeded from (seed, epoch, worker, batch index).
        images, boxes, labels = augment_batch(
            base["images"],
            [t["boxes"].as_subclass(torch.Tensor) for t in base["targets"]],
            [t["labels"] for t in base["targets"]],
            build_transform(config, size),
            zlib.crc32(f"3/0/0/{index}".encode()),
        )
        assert torch.equal(images, got["images"])
        assert all(torch.equal(t["boxes"].as_subclass(torch.Tensor), b) for t, b in zip(got["targets"], boxes))
        assert all(torch.equal(t["labels"], lab) for t, lab in zip(got["targets"], labels))


def _paper_record(h: int, w: int) -> Record:

    return Record(
        h, w, 30.0, quantized_inr(6, 2, 0), [ObjectEntry((1.0, 2.0, 6.5, 9.0), 0.25, quantized_inr(8, 2, 1))], "ans"
    )


def test_mixed_batch_warps_grid_frames_and_resamples_the_others(shards, monkeypatch):
    classic = torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8)
    packed = pack_records([_paper_record(12, 16), classic, unpack(RECORD.read_bytes())])
    assert [isinstance(g, WarpedPacked) for g in packed.groups] == [False, False, True]
    boxes = [
        torch.tensor([[1.0, 2.0, 6.5, 9.0]]),
        torch.tensor([[4.0, 4.0, 20.0, 16.0]]),
        torch.tensor([[76.0, 5, 93, 32]]),
    ]
    labels = [torch.tensor([1]), torch.tensor([0]), torch.tensor([1])]
    batch = LoaderBatch(["p", "c", "g"], boxes, labels, packed.frame_sizes, packed, 0, 0, 0)
    seen = _record_calls(monkeypatch)
    # Scale jitter down only: the grid frame always renders fewer pixels through its warp.
    config = AugmentConfig(**{**GEOMETRIC_ONLY, "scale": (0.4, 0.7)})
    loader = RINRLoader(RINRDataset(shards / "rinr", batch_size=3, device="cpu"), image_size=(48, 64), augment=config)
    out = loader.finish(batch)
    assert out["images"].shape == (3, 3, 48, 64) and out["keys"] == ["p", "c", "g"]
    assert seen["warped"] == [[False, False, True]]
    whole = decode_packed(packed, CPU, as_float=True)
    for i, geometry in enumerate(seen["geometries"][0]):
        want_boxes, want_labels = geometry.map_boxes(boxes[i], labels[i], packed.frame_sizes[i])
        assert torch.equal(out["targets"][i]["boxes"].as_subclass(torch.Tensor), want_boxes)
        assert torch.equal(out["targets"][i]["labels"], want_labels)
        if i < 2:  # paper and classic: decoded whole, then resampled to the same geometry
            want = geometry.resample(letterbox(whole[i], boxes[i], (48, 64))[0]).clamp(0, 1)
            assert torch.equal(out["images"][i], want)
    grid = seen["geometries"][0][2]
    warp = grid.warp((96, 128))
    inner, outside, _ = _regions(warp, (96, 128))
    assert bool((out["images"][2][:, outside] == PAD_VALUE).all())
    error = (out["images"][2] - _reference(whole[2], grid).clamp(0, 1)).abs()[:, inner]
    assert float(error.mean()) < SCALE_MAE


def test_loader_at_decode_is_reproducible_and_resumes(shards):
    def make() -> RINRLoader:
        return RINRLoader(RINRDataset(shards / "rinr", batch_size=2, seed=9, device="cpu"), augment=AugmentConfig())

    full = [b for b in make()]
    again = [b for b in make()]
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(full, again))
    interrupted = make()
    it = iter(interrupted)
    head = [next(it) for _ in range(2)]
    state = interrupted.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    tail = list(resumed)
    for got, want in zip(head + tail, full):
        assert got["keys"] == want["keys"] and torch.equal(got["images"], want["images"])
        assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(got["targets"], want["targets"]))


# --- (f) fewer pixels synthesised ---------------------------------------------------------------------------------


def test_a_downscale_synthesises_fewer_pixels(real, monkeypatch):
    rows: list[int] = []
    mlp = model._mlp

    def counting(layers, x, repeats=1):
        rows.append(x.shape[0] * x.shape[1])  # pixels (tile rows) through the synthesis MLP
        return mlp(layers, x, repeats)

    monkeypatch.setattr(model, "_mlp", counting)
    frame = (real.height, real.width)
    real.render(CPU)
    full = rows.pop()
    geometry = GEOMETRIES["downscale"]  # 0.75x, padded: 72x96 of the 96x128 output show the frame
    warp = geometry.warp(frame)
    real.render_warped(CPU, [warp], PAD_VALUE)
    warped = rows.pop()
    kept = warp.pixels(frame)
    assert kept == 72 * 96
    assert warped == -(-kept // TILE) * TILE < full == -(-frame[0] * frame[1] // TILE) * TILE
    # Over draws of a jitter that also zooms out (output the frame's size) the warp keeps on average well under the
    # frame, and never more than it.
    draws = draw_geometries(AugmentConfig(scale=(0.5, 1.6)), frame, 200, 1)
    ratios = [g.warp(frame).pixels(frame) / (frame[0] * frame[1]) for g in draws]
    assert max(ratios) <= 1 and sum(ratios) / len(ratios) < 0.9


def test_decode_warped_keeps_frames_without_a_warp_whole(real):
    trio = _trio(real)
    batch = PackedBatch([trio], [(96, 128)] * 3)
    warp = GEOMETRIES["downscale"].warp((96, 128))
    images, warped = decode_packed_warped(batch, [None, warp, None], CPU, fill=PAD_VALUE)
    assert warped == [False, True, False]
    whole = decode_packed(batch, CPU)
    assert images[1].shape == (3, 96, 128) and images[1].dtype == torch.uint8
    for i in (0, 2):  # the identity warp: the frame, to a uint8 level
        assert int((images[i].int() - whole[i].int()).abs().max()) <= 1
    images, warped = decode_packed_warped(batch, [None] * 3, CPU)
    assert warped == [False] * 3 and all(torch.equal(a, b) for a, b in zip(images, whole))
