"""The device cache: per-frame split and merge of every codec's packing, and cached epochs that give exactly the
batches of an uncached loader (order, pixels, augmentation, resume, damaged samples, ranks, budget)."""

from __future__ import annotations

import io
import shutil
import tarfile
import warnings

import numpy as np
import pytest
import torch
from shard_fixtures import quantized_inr, write_dataset

from rinr_data.codecs.classic import PackedImages
from rinr_data.codecs.grid.model import GridShape
from rinr_data.codecs.grid.packing import PackedGrids
from rinr_data.codecs.grid.record import GridRecord
from rinr_data.codecs.paper.packing import PackedSirens
from rinr_data.codecs.paper.record import ObjectEntry, Record
from rinr_data.decode import PackedBatch, decode_packed, pack_records
from rinr_data.format.quantize import QuantizedTensor
from rinr_data.pipeline.augment import AugmentConfig
from rinr_data.pipeline.cache import DeviceCache, merge_frames
from rinr_data.pipeline.dataset import LoaderBatch, RINRDataset
from rinr_data.pipeline.loader import RINRLoader

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    write_dataset(root / "rinr", count=10, shard_size=3)
    write_dataset(root / "jpeg", count=10, shard_size=3, codec="jpeg")
    return root


def _loader(folder, workers=0, cache=None, batch_size=4, device="cpu", **options) -> RINRLoader:
    dataset_options = {k: options.pop(k) for k in list(options) if k not in ("cache_bytes",)}
    ds = RINRDataset(folder, batch_size=batch_size, seed=5, device=device, **dataset_options)
    return RINRLoader(ds, num_workers=workers, augment=AugmentConfig(), cache=cache, **options)


def _assert_same(got: list[dict], want: list[dict]) -> None:
    assert [b["keys"] for b in got] == [b["keys"] for b in want]
    for a, b in zip(got, want):
        assert torch.equal(a["images"], b["images"])
        for ta, tb in zip(a["targets"], b["targets"]):
            assert torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])


# --- split and merge in the codecs --------------------------------------------------------------------------------


def _roundtrip(batch) -> None:
    """Every group split into frames and merged back renders bit for bit as the batch itself."""
    frames: dict[int, object] = {}
    for group in batch.groups:
        for part in group.split():
            frames[part.members[0]] = part
    merged = merge_frames([frames[fi] for fi in range(len(batch))])
    assert [type(g) for g in merged] == [type(g) for g in batch.groups]
    assert [g.members for g in merged] == [g.members for g in batch.groups]
    want = decode_packed(batch, "cpu")
    got = decode_packed(type(batch)(merged, batch.frame_sizes), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def _grid_record(h: int, w: int, seed: int, spread: float, scene: str | None = None) -> GridRecord:
    rng = np.random.default_rng(seed)
    shape = GridShape(levels=3, hidden=(4,))
    latents = [np.round(rng.laplace(0, spread, size)).astype(np.int32) for size in shape.level_sizes(h, w)]
    ints = [
        np.round(rng.normal(0, 30, n)).clip(-127, 127).astype(np.int32)
        for fi, fo in shape.layer_dims()
        for n in (fi * fo, fo)
    ]
    if scene is not None:
        return GridRecord(h, w, shape, 8, [], latents, None, scene, [v // 10 for v in ints])
    return GridRecord(h, w, shape, 8, [], latents, [QuantizedTensor(v, 0.0078125, 8) for v in ints])


def test_grid_frames_split_compact_and_merge_back_bit_exact():
    scene = _grid_record(12, 16, 0, 2.0)
    records = [
        _grid_record(12, 16, 1, 1.5),
        _grid_record(10, 20, 2, 400.0),  # latents past int8
        _grid_record(12, 16, 3, 1.5, scene="s0"),  # its scene's latents and synthesis added in
        _grid_record(12, 16, 4, 1.5),
    ]
    batch = pack_records(records, {"s0": scene})
    assert len(batch.groups) == 2 and all(isinstance(g, PackedGrids) for g in batch.groups)
    _roundtrip(batch)
    dtypes = {g.height: {t.dtype for p in g.split() for t in p.latents} for g in batch.groups}
    assert dtypes[12] <= {torch.int8, torch.int16} and torch.int8 in dtypes[12]
    assert torch.int16 in dtypes[10]
    # Frames held from different batches compact to different types; merged, they decode as one batch of them.
    wide = pack_records([_grid_record(12, 16, 5, 400.0)]).groups[0].split()[0]
    narrow = batch.groups[1].split()[0]
    assert {t.dtype for t in wide.latents} == {torch.int16} and {t.dtype for t in narrow.latents} == {torch.int8}
    (mixed,) = merge_frames([narrow, wide])
    assert [t.dtype for t in mixed.latents] == [torch.int16] * 3
    alone = [decode_packed(PackedBatch([p], [(12, 16)]), "cpu")[0] for p in (narrow, wide)]
    together = decode_packed(PackedBatch([mixed], [(12, 16)] * 2), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(together, alone))


def test_paper_frames_split_and_merge_back_bit_exact():
    records = [
        Record(
            12,
            16,
            30.0,
            quantized_inr(6, 2, 0),
            [ObjectEntry((1.0, 2.0, 6.5, 9.0), 0.25, quantized_inr(10, 3, 1))],
            "ans",
        ),
        Record(12, 16, 30.0, quantized_inr(6, 2, 2), [], "ans"),
        Record(
            10,
            14,
            30.0,
            quantized_inr(8, 2, 3),
            [
                ObjectEntry((0.0, 0.0, 5.0, 5.0), 0.5, quantized_inr(10, 3, 4)),
                ObjectEntry((3, 3, 9, 8), 0.3, quantized_inr(6, 2, 5)),
            ],
            "ans",
        ),
    ]
    batch = pack_records(records)
    assert isinstance(batch.groups[0], PackedSirens)
    _roundtrip(batch)


def test_classic_frames_split_and_merge_back():
    images = [torch.randint(0, 256, (3, 6, 8), dtype=torch.uint8) for _ in range(3)]
    batch = pack_records(images)
    parts = batch.groups[0].split()
    assert all(isinstance(p, PackedImages) and p.images[0].dtype == torch.uint8 for p in parts)
    assert parts[1].images[0].data_ptr() != images[1].data_ptr()  # held frames own their storage
    _roundtrip(batch)


class _NoMerge(PackedImages):
    merge = None  # type: ignore[assignment]


class _NoSplit(PackedImages):
    split = None  # type: ignore[assignment]


def test_packings_without_merge_render_per_frame_and_without_split_are_not_held():
    images = [torch.randint(0, 256, (3, 6, 8), dtype=torch.uint8) for _ in range(3)]
    frames = _NoMerge(images, [0, 1, 2]).split()
    merged = merge_frames([_NoMerge(f.images, f.members) for f in frames])
    assert [g.members for g in merged] == [[0], [1], [2]]
    assert all(torch.equal(g.render(torch.device("cpu"))[0], i.float() / 255) for g, i in zip(merged, images))
    cache = DeviceCache(torch.device("cpu"))
    boxes, labels = [torch.zeros(0, 4)] * 3, [torch.zeros(0, dtype=torch.int64)] * 3
    batch = LoaderBatch(
        ["a", "b", "c"],
        boxes,
        labels,
        [(6, 8)] * 3,
        PackedBatch([_NoSplit(images, [0, 1, 2])], [(6, 8)] * 3),
        0,
        0,
        0,
        [("s", 0), ("s", 1), ("s", 2)],
    )
    with pytest.warns(UserWarning, match="cannot be split"):
        cache.add(batch)
    assert not cache.stats()["enabled"] and not cache.entries


# --- cached epochs against an uncached loader ----------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["rinr", "jpeg"])
@pytest.mark.parametrize("workers", [0, 2])
def test_cached_epochs_give_the_uncached_batches_without_reading_shards(datasets, tmp_path, codec, workers):
    folder = tmp_path / codec
    shutil.copytree(datasets / codec, folder)
    reference, cached = _loader(datasets / codec, workers), _loader(folder, workers, "device")
    _assert_same(list(cached), list(reference))  # epoch 0 fills the cache
    for tar in folder.glob("*.tar"):
        tar.unlink()  # from now on a shard read would fail
    for _ in range(2):
        _assert_same(list(cached), list(reference))
    stats = cached.cache_stats()
    assert stats["replayed_epochs"] == 2 and stats["frames"] == 10 and stats["enabled"]
    assert stats["bytes"] == 10 * stats["bytes_per_frame"] > 0 and stats["frames_per_gib"] > 0


@pytest.mark.gpu
@pytest.mark.parametrize("codec", ["rinr", "jpeg"])
def test_cached_epochs_on_cuda_give_the_uncached_batches(datasets, tmp_path, codec):
    folder = tmp_path / codec
    shutil.copytree(datasets / codec, folder)
    reference = _loader(datasets / codec, 2, device="cuda")
    cached = _loader(folder, 2, "device", device="cuda")
    _assert_same(list(cached), list(reference))
    for tar in folder.glob("*.tar"):
        tar.unlink()
    _assert_same(list(cached), list(reference))
    assert cached.cache_stats()["replayed_epochs"] == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_inside_a_cached_epoch(datasets, workers):
    folder = datasets / "rinr"
    reference = _loader(folder, workers, batch_size=2)
    list(reference)
    full = list(reference)  # epoch 1
    interrupted = _loader(folder, workers, "device", batch_size=2)
    list(interrupted)
    it = iter(interrupted)
    head = [next(it) for _ in range(2)]
    state = interrupted.state_dict()
    del it
    filled = _loader(folder, workers, "device", batch_size=2)
    list(filled)  # its own cache, filled in epoch 0
    filled.load_state_dict(state)
    _assert_same(head + list(filled), full)
    assert filled.cache_stats()["replayed_epochs"] == 1
    for fresh in (_loader(folder, workers, "device", batch_size=2), _loader(folder, workers, batch_size=2)):
        fresh.load_state_dict(state)  # an empty cache, or none: the workers start the epoch over
        _assert_same(head + list(fresh), full)
    refilled = _loader(folder, workers, "device", batch_size=2)
    refilled.load_state_dict(state)
    list(refilled)
    assert refilled.cache_stats()["frames"] == 10  # the skipped batches were held too
    _assert_same(list(refilled), list(reference))
    assert refilled.cache_stats()["replayed_epochs"] == 1


def test_resume_inside_the_filling_epoch(datasets):
    folder = datasets / "rinr"
    reference = _loader(folder, batch_size=2)
    epochs = [list(reference) for _ in range(3)]
    interrupted = _loader(folder, 0, "device", batch_size=2)
    it = iter(interrupted)
    head = [next(it) for _ in range(2)]
    resumed = _loader(folder, 0, "device", batch_size=2)
    resumed.load_state_dict(interrupted.state_dict())
    _assert_same(head + list(resumed), epochs[0])
    _assert_same(list(resumed), epochs[1])  # the batches skipped at the resume were never held: workers again
    _assert_same(list(resumed), epochs[2])
    assert resumed.cache_stats()["replayed_epochs"] == 1


def _corrupt_copy(src, dst, key: str) -> None:
    """Copy a shard folder, flipping a byte inside one sample's record."""
    shutil.copytree(src, dst)
    for shard in dst.glob("*.tar"):
        with tarfile.open(shard) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        if any(m.name == f"{key}.rinr" for m, _ in members):
            with tarfile.open(shard, "w") as tar:
                for m, data in members:
                    if m.name == f"{key}.rinr":
                        data = data[:20] + bytes([data[20] ^ 0xFF]) + data[21:]
                    tar.addfile(m, io.BytesIO(data))


@pytest.mark.parametrize("workers", [0, 2])
def test_damaged_samples_stay_out_and_drop_last_holds(datasets, tmp_path, workers):
    _corrupt_copy(datasets / "rinr", tmp_path / "bad", "frame_004")
    options = {"on_error": "skip", "drop_last": True, "batch_size": 3}
    reference, cached = (
        _loader(tmp_path / "bad", workers, **options),
        _loader(tmp_path / "bad", workers, "device", **options),
    )
    for _ in range(4):  # samples a dropped tail left out are held once an epoch has needed them
        _assert_same(list(cached), list(reference))
    assert cached.cache_stats()["replayed_epochs"] >= 1
    assert "frame_004" not in {e.key for e in cached.cache.entries.values()}
    assert [failed for _, failed in cached.cache.shards.values() if failed] == [{1}]  # shard 1 is frames 3, 4, 5


@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_cache_their_own_share(datasets, shuffle):
    held = []
    for rank in (0, 1):
        options = {"rank": rank, "world_size": 2, "shuffle": shuffle, "batch_size": 2}
        reference = _loader(datasets / "rinr", fixed_shares=True, **options)
        cached = _loader(datasets / "rinr", 0, "device", **options)
        assert cached.dataset.fixed_shares
        epochs = []
        for _ in range(3):
            got = list(cached)
            _assert_same(got, list(reference))
            epochs.append([k for b in got for k in b["keys"]])
        held.append({e.key for e in cached.cache.entries.values()})
        # A fixed share, shuffled or not: the cache holds it and never grows past it. Rank 0's share (shards 0 and 2,
        # 6 frames) is trimmed to rank 1's 4 (shards 1 and 3) by the equal-batches quota, so under a shuffle it may
        # take two epochs to fill.
        replayed = cached.cache_stats()["replayed_epochs"]
        assert replayed == 2 if not shuffle else replayed >= 1
        assert all(set(keys) <= held[rank] for keys in epochs)
        if shuffle:
            assert len({tuple(keys) for keys in epochs}) > 1  # still reshuffled every epoch
    assert not held[0] & held[1]
    assert len(held[0]) <= 6 and len(held[1]) == 4


def test_shares_move_between_ranks_without_the_cache(datasets):
    """Without a cache each epoch deals a dataset-wide shuffle to the ranks (webdataset's node split)."""
    shares = []
    for epoch in range(4):
        ds = RINRDataset(datasets / "rinr", batch_size=2, seed=5, rank=0, world_size=2, device="cpu")
        ds.set_epoch(epoch)
        shares.append(frozenset(s.url for s in ds.rank_shards(0)))
    assert len(set(shares)) > 1


def test_a_share_over_budget_disables_the_cache_once(datasets):
    reference = _loader(datasets / "rinr")
    cached = _loader(datasets / "rinr", 0, "device", cache_bytes=3000)
    with pytest.warns(UserWarning, match=r"device cache disabled: .* 10 frames needs about .* bytes per frame"):
        _assert_same(list(cached), list(reference))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
        _assert_same(list(cached), list(reference))
    stats = cached.cache_stats()
    assert not stats["enabled"] and stats["frames"] == 0 and stats["bytes"] == 0


def test_cache_option_is_checked(datasets):
    with pytest.raises(ValueError, match="cache must be one of"):
        _loader(datasets / "rinr", cache="host")
    with pytest.raises(ValueError, match="cache_bytes"):
        _loader(datasets / "rinr", cache="device", cache_bytes=0)


def test_lightning_resume_inside_a_cached_epoch(datasets, tmp_path):
    import lightning as L
    from torch import nn

    from lightning_modules.data import RINRDataModule

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)
            self.keys: list[list[str]] = []

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            self.keys.append(list(batch["keys"]))
            return self.conv(batch["images"]).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    def fit(cache, max_steps=-1, ckpt=None, saver=None) -> list[list[str]]:
        model = Recorder()
        dm = RINRDataModule(datasets / "rinr", batch_size=2, num_workers=0, device="cpu", seed=1, cache=cache)
        quiet = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)
        trainer = L.Trainer(
            accelerator="cpu",
            max_epochs=3,
            max_steps=max_steps,
            limit_val_batches=0,
            callbacks=[saver] if saver else [],
            enable_checkpointing=saver is not None,
            **quiet,
        )
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
        replayed.append((trainer.train_dataloader.cache_stats() or {}).get("replayed_epochs"))
        return model.keys

    replayed: list[int | None] = []
    reference = fit(None)
    assert len(reference) == 15 and fit("device") == reference and replayed[-1] == 2
    for k, after in ((7, 1), (12, 0)):  # inside epoch 1 and epoch 2, both served from the cache
        saver = L.pytorch.callbacks.ModelCheckpoint(tmp_path / str(k), every_n_train_steps=k, save_top_k=-1)
        assert fit("device", max_steps=k, saver=saver) == reference[:k]
        # A new process holds nothing: the workers refill the interrupted epoch, the next one is replayed.
        assert fit("device", ckpt=next((tmp_path / str(k)).glob("*.ckpt"))) == reference[k:]
        assert replayed[-1] == after
