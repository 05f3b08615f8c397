"""RINRDataset and RINRLoader: batch contract, exact decode, worker/node splits, resume, errors, letterbox."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch
from shard_fixtures import write_dataset
from torchvision import tv_tensors

import rinr_data as R
from rinr_data.pipeline.augment import AugmentConfig
from rinr_data.pipeline.dataset import RINRDataset
from rinr_data.pipeline.loader import RINRLoader


@pytest.fixture(scope="module")
def rinr_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rinr")
    keys = write_dataset(out, count=10, shard_size=3)
    return out, keys


@pytest.fixture(scope="module")
def jpeg_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("jpeg")
    write_dataset(out, count=10, shard_size=3, codec="jpeg")
    return out


def _all(loader) -> list[dict]:
    return list(loader)


def _flat_keys(batches) -> list[str]:
    return [k for b in batches for k in b["keys"]]


def test_batch_contract(rinr_dir):
    out, _ = rinr_dir
    batches = _all(RINRLoader(RINRDataset(out, batch_size=4, device="cpu")))
    b = batches[0]
    assert set(b) == {"images", "targets", "keys"}
    assert b["images"].dtype == torch.float32 and b["images"].shape == (4, 3, 16, 20)
    assert 0 <= float(b["images"].min()) and float(b["images"].max()) <= 1
    for t in b["targets"]:
        assert isinstance(t["boxes"], tv_tensors.BoundingBoxes)
        assert t["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY and t["boxes"].dtype == torch.float32
        assert t["labels"].dtype == torch.int64 and len(t["labels"]) == len(t["boxes"])
    assert [len(b["keys"]) for b in batches] == [4, 4, 2]


def test_decoded_images_equal_rinr_decode(rinr_dir):
    out, _ = rinr_dir
    from rinr_data.shards import iter_shard

    reference = {}
    for shard in sorted(out.glob("*.tar")):
        for sample in iter_shard(shard):
            reference[sample["__key__"]] = R.decode(sample["rinr"]).to(torch.float32) / 255
    for batch in RINRLoader(RINRDataset(out, batch_size=3, device="cpu")):
        for key, img in zip(batch["keys"], batch["images"]):
            assert torch.equal(img, reference[key])


def test_boxes_and_labels_match_the_json(rinr_dir):
    out, _ = rinr_dir
    seen = {}
    for batch in RINRLoader(RINRDataset(out, batch_size=5, shuffle=False, device="cpu")):
        for key, t in zip(batch["keys"], batch["targets"]):
            seen[key] = (t["boxes"].tolist(), t["labels"].tolist())
    i = 2
    assert seen[f"frame_{i:03d}"] == ([[3.0, 2.0, 11.0, 11.0], [12.0, 3.0, 19.0, 15.0]], [0, 0])
    assert seen["frame_000"] == ([], [])


@pytest.mark.parametrize("workers", [0, 2])
def test_every_sample_once_per_epoch(rinr_dir, workers):
    out, keys = rinr_dir
    loader = RINRLoader(RINRDataset(out, batch_size=2, seed=3, device="cpu"), num_workers=workers)
    first, second = _flat_keys(loader), _flat_keys(loader)
    assert sorted(first) == sorted(keys) and sorted(second) == sorted(keys)
    assert first != second  # a new epoch reshuffles


def test_node_split_is_disjoint_and_equal(rinr_dir):
    out, keys = rinr_dir
    per_rank = []
    for rank in range(2):
        ds = RINRDataset(out, batch_size=2, rank=rank, world_size=2, device="cpu")
        per_rank.append([b["keys"] for b in RINRLoader(ds)])
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    flat = [set(k for b in batches for k in b) for batches in per_rank]
    assert not flat[0] & flat[1]
    assert all(len(b) == 2 for batches in per_rank for b in batches)


def test_local_shards_without_a_manifest_are_counted(rinr_dir, tmp_path):
    out, _ = rinr_dir
    listed = RINRDataset(out, batch_size=2, device="cpu")
    urls = [s.url for s in listed.shards]
    bare = RINRDataset(urls, batch_size=2, rank=1, world_size=2, device="cpu")
    assert [s.samples for s in bare.shards] == [s.samples for s in listed.shards]
    assert sum(s.samples for s in bare.shards) == 10
    assert len(RINRLoader(bare)) == len(list(RINRLoader(bare))) > 0  # a length, and equal batches under DDP work
    # Remote shards (not fetched to count) and unreadable local ones stay uncounted; equal batches then refuse.
    # (A local path with nothing at it is refused outright: tests/test_hostile_records.py.)
    unreadable = tmp_path / "junk.tar"
    unreadable.write_bytes(b"not a tar file" * 100)
    unknown = RINRDataset(
        ["http://127.0.0.1:9/shard-000000.tar", str(unreadable), *urls], batch_size=2, rank=0, world_size=2
    )
    assert [s.samples for s in unknown.shards[:2]] == [None, None]
    with pytest.raises(ValueError, match="manifest"):
        next(iter(unknown))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_gives_the_same_batches(rinr_dir, workers):
    out, _ = rinr_dir

    def make():
        ds = RINRDataset(out, batch_size=2, seed=5, device="cpu")
        return RINRLoader(ds, num_workers=workers, augment=AugmentConfig())

    reference = make()
    _all(reference)  # epoch 0; resume inside epoch 1 so the epoch counter is part of the state
    full = _all(reference)
    interrupted = make()
    _all(interrupted)
    it = iter(interrupted)
    head = [next(it) for _ in range(2)]
    state = interrupted.state_dict()
    del it
    resumed = make()
    resumed.load_state_dict(state)
    tail = _all(resumed)
    assert len(head) + len(tail) == len(full)
    for got, want in zip(head + tail, full):
        assert got["keys"] == want["keys"]
        assert torch.equal(got["images"], want["images"])
        assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(got["targets"], want["targets"]))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("cache", [None, "device"])
def test_a_state_saved_after_an_epochs_last_batch_resumes_at_the_next_epoch(rinr_dir, workers, cache):
    """A checkpoint at the end of an epoch (where Lightning saves one) resumes with the next epoch's batches: it gave
    an empty epoch with 0 workers and the finished epoch again with 2."""
    out, _ = rinr_dir

    def make():
        return RINRLoader(RINRDataset(out, batch_size=2, seed=5, device="cpu"), num_workers=workers, cache=cache)

    reference = make()
    _all(reference)
    following = _all(reference)
    interrupted = make()
    _all(interrupted)
    state = interrupted.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    got = _all(resumed)
    assert [b["keys"] for b in got] == [b["keys"] for b in following] and len(got) > 0
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(got, following))


def test_jpeg_shards_give_the_same_batch_structure(rinr_dir, jpeg_dir):
    out, _ = rinr_dir
    a = next(iter(RINRLoader(RINRDataset(out, batch_size=4, shuffle=False, device="cpu"))))
    b = next(iter(RINRLoader(RINRDataset(jpeg_dir, batch_size=4, shuffle=False, device="cpu"))))
    assert a["keys"] == b["keys"]
    assert a["images"].shape == b["images"].shape and a["images"].dtype == b["images"].dtype
    for ta, tb in zip(a["targets"], b["targets"]):
        assert torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])
        assert type(ta["boxes"]) is type(tb["boxes"])


def test_mixed_sizes_need_and_get_letterboxing(tmp_path):
    write_dataset(tmp_path, sizes=[(16, 20), (10, 30), (24, 12)], shard_size=3)
    with pytest.raises(ValueError, match="image_size"):
        _all(RINRLoader(RINRDataset(tmp_path, batch_size=3, shuffle=False, device="cpu")))
    batch = next(
        iter(RINRLoader(RINRDataset(tmp_path, batch_size=3, shuffle=False, device="cpu"), image_size=(16, 16)))
    )
    assert batch["images"].shape == (3, 3, 16, 16)
    # 10x30 frame scaled by 16/30: its box [1, 1, 6, 7] shrinks alike.
    assert torch.allclose(
        batch["targets"][1]["boxes"],
        torch.tensor([[1, 1, 6, 7]]) * torch.tensor([16 / 30, 5 / 10, 16 / 30, 5 / 10]),
        atol=1e-5,
    )


def _corrupt_copy(src, dst, key: str) -> None:
    """Copy a shard folder, flipping a byte inside one sample's record."""
    import shutil

    shutil.copytree(src, dst)
    for shard in dst.glob("*.tar"):
        with tarfile.open(shard) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        if not any(m.name == f"{key}.rinr" for m, _ in members):
            continue
        with tarfile.open(shard, "w") as tar:
            for m, data in members:
                if m.name == f"{key}.rinr":
                    data = data[:20] + bytes([data[20] ^ 0xFF]) + data[21:]
                tar.addfile(m, io.BytesIO(data))


def test_corrupt_sample_is_named_and_never_takes_others_with_it(rinr_dir, tmp_path):
    out, keys = rinr_dir
    _corrupt_copy(out, tmp_path / "bad", "frame_004")
    with pytest.raises(R.FormatError, match=r"shard-000001\.tar: sample 'frame_004': record checksum"):
        _all(RINRLoader(RINRDataset(tmp_path / "bad", batch_size=2, device="cpu")))
    ds = RINRDataset(tmp_path / "bad", batch_size=2, on_error="warn", device="cpu")
    with pytest.warns(UserWarning, match="frame_004"):
        got = _flat_keys(RINRLoader(ds))
    assert sorted(got) == sorted(k for k in keys if k != "frame_004")


def test_workers_refuse_cuda(rinr_dir):
    out, _ = rinr_dir

    class Touchy(RINRDataset):
        def __iter__(self):
            torch.cuda.init()
            yield from super().__iter__()

    loader = RINRLoader(Touchy(out, batch_size=2, device="cpu"), num_workers=1)
    with pytest.raises(RuntimeError, match="must not be initialised in a DataLoader worker"):
        _all(loader)


def test_len_matches_the_batches_delivered(rinr_dir):
    out, _ = rinr_dir
    for workers in (0, 2):
        loader = RINRLoader(RINRDataset(out, batch_size=2, device="cpu"), num_workers=workers)
        assert len(loader) == len(_all(loader))


def test_blur_and_noise_are_off_by_default_and_change_pixels_not_boxes():
    from rinr_data.pipeline.augment import augment_batch, build_transform

    plain = dict(flip=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0)
    images = torch.rand(2, 3, 24, 32)
    boxes, labels = [torch.tensor([[1.0, 2.0, 10.0, 12.0]])] * 2, [torch.tensor([0])] * 2
    same = augment_batch(images, boxes, labels, build_transform(AugmentConfig(**plain), (24, 32)), seed=1)[0]
    assert torch.equal(same, images)
    for extra in ({"blur": 1.0}, {"noise": 1.0}):
        out, out_boxes, _ = augment_batch(
            images, boxes, labels, build_transform(AugmentConfig(**plain, **extra), (24, 32)), seed=1
        )
        assert float((out - images).abs().mean()) > 0.005 and 0 <= float(out.min()) and float(out.max()) <= 1
        assert all(torch.equal(a, b) for a, b in zip(out_boxes, boxes))
    blurred = augment_batch(images, boxes, labels, build_transform(AugmentConfig(**plain, blur=1.0), (24, 32)), 1)[0]
    assert float(blurred.std()) < float(images.std())  # a blur smooths the noise-like test image


def test_box_blur_changes_only_the_pixels_inside_boxes():
    from rinr_data.pipeline.augment import augment_batch, build_transform

    plain = dict(flip=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0)
    images = torch.rand(2, 3, 24, 32)
    # Fractional edges: every pixel a box touches is blurred, the region the codec keeps at object quality
    boxes = [torch.tensor([[1.5, 2.4, 9.6, 11.5], [20.0, 14.0, 30.0, 22.0]]), torch.zeros(0, 4)]
    labels = [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.int64)]
    out, out_boxes, _ = augment_batch(
        images, boxes, labels, build_transform(AugmentConfig(**plain, box_blur=1.0), (24, 32)), seed=3
    )
    inside = torch.zeros(24, 32, dtype=torch.bool)
    inside[2:12, 1:10] = inside[14:22, 20:30] = True
    changed = (out[0] - images[0]).abs().sum(0) > 0
    assert torch.equal(changed, inside)  # every box pixel is smoothed, nothing outside moves
    assert float(out[0][:, inside].std()) < float(images[0][:, inside].std())
    assert torch.equal(out[1], images[1])  # no boxes: nothing to blur
    assert all(torch.equal(a, b) for a, b in zip(out_boxes, boxes))
    off = augment_batch(images, boxes, labels, build_transform(AugmentConfig(**plain, box_blur=0.0), (24, 32)), 3)[0]
    assert torch.equal(off, images)


def test_background_sharpen_changes_only_the_pixels_outside_boxes():
    from rinr_data.core.metrics import region_detail
    from rinr_data.pipeline.augment import augment_batch, build_transform

    plain = dict(flip=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 26, 34), 3, stride=1)  # 24x32, room to sharpen
    boxes = [torch.tensor([[1.0, 2.0, 10.0, 12.0], [20.0, 14.0, 30.0, 22.0]]), torch.zeros(0, 4)]
    labels = [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.int64)]
    config = AugmentConfig(**plain, background_sharpen=1.0)
    out, out_boxes, _ = augment_batch(smooth, boxes, labels, build_transform(config, (24, 32)), seed=3)
    inside = torch.zeros(24, 32, dtype=torch.bool)
    inside[2:12, 1:10] = inside[14:22, 20:30] = True
    changed = (out - smooth).abs().sum(1) > 0
    assert not (changed[0] & inside).any()  # box pixels keep their values
    # torchvision's adjust_sharpness leaves the frame's outermost pixels as they are; the rest of the background moves
    interior = torch.zeros(24, 32, dtype=torch.bool)
    interior[1:-1, 1:-1] = True
    assert changed[0][interior & ~inside].float().mean() > 0.95 and changed[1][interior].all()  # no boxes: all of it
    detail = [region_detail(x[1], []).background for x in (smooth, out)]
    assert detail[1] > 1.5 * detail[0]  # sharper: more fine detail
    assert all(torch.equal(a, b) for a, b in zip(out_boxes, boxes))
