"""rinr_bench.compare: frame-index splits, lossless reference shards, shard statistics, matched JPEG qualities."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from shard_fixtures import write_dataset
from tiny_datasets import TRUTH, write_coco

from rinr_bench.compare import (
    QualityScan,
    encode_lossless,
    load_samples,
    shard_stats,
    split_source,
    write_lossless_shards,
)
from rinr_data import shards
from rinr_data.codecs.classic import decode_classic
from rinr_data.sources import load_sample, open_source


@pytest.fixture
def six_frames(tmp_path):
    """A COCO source of 6 frames f0..f5 in that order."""
    truth = {f"f{i}": TRUTH[("img_a", "img_b", "img_c")[i % 3]] for i in range(6)}
    return open_source(write_coco(tmp_path / "coco", truth))


def test_split_is_by_frame_index_and_disjoint(six_frames):
    train, val = split_source(six_frames, 3, 2)
    assert [i.key for i in train.items] == ["f0", "f1", "f2"]
    assert [i.key for i in val.items] == ["f4", "f5"]
    train, val = split_source(six_frames)  # a quarter (rounded) validates, the rest trains
    assert [i.key for i in train.items] == ["f0", "f1", "f2", "f3"] and [i.key for i in val.items] == ["f4", "f5"]
    assert train.classes == six_frames.classes and len(six_frames.items) == 6  # the source is not modified


@pytest.mark.parametrize("train, val", [(5, 2), (0, 2), (3, 0)])
def test_split_rejects_impossible_counts(six_frames, train, val):
    with pytest.raises(ValueError, match="frame"):
        split_source(six_frames, train, val)


def test_lossless_encoding_is_pixel_exact():
    noise = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    assert torch.equal(decode_classic(encode_lossless(noise)), torch.from_numpy(noise).permute(2, 0, 1))


def test_lossless_shards_hold_the_original_frames(six_frames, tmp_path):
    out = write_lossless_shards(six_frames, tmp_path / "ref", shard_size=4)
    manifest = shards.read_manifest(out)
    assert manifest["codec"] == "webp" and manifest["codec_config"] == {"lossless": True}
    assert [s["samples"] for s in manifest["shards"]] == [4, 2] and manifest["classes"] == six_frames.classes
    stored = [s for entry in manifest["shards"] for s in shards.iter_shard(out / entry["name"])]
    for item, sample in zip(six_frames.items, stored):
        original = load_sample(item)
        meta = json.loads(sample["json"])
        assert sample["__key__"] == item.key
        assert torch.equal(decode_classic(sample["webp"]), torch.from_numpy(original.image).permute(2, 0, 1))
        assert meta["object_psnr"] == meta["background_psnr"] == shards.PSNR_LOSSLESS
        assert meta["boxes"] == shards.stored_boxes(original.boxes) and meta["labels"] == original.labels


def test_lossless_shards_from_loaded_samples_match_reading_them(six_frames, tmp_path):
    """Samples already loaded (a video benchmark holds them) give the same shards as reading the files again."""
    read = write_lossless_shards(six_frames, tmp_path / "read", shard_size=4)
    loaded = load_samples(six_frames)
    for item in six_frames.items:  # the files are not read again
        item.image_path.unlink()
    given = write_lossless_shards(six_frames, tmp_path / "given", shard_size=4, samples=loaded)
    for name in ("shard-000000.tar", "shard-000001.tar"):
        assert [dict(s) for s in shards.iter_shard(read / name)] == [dict(s) for s in shards.iter_shard(given / name)]
    with pytest.raises(ValueError, match="5 samples for 6 frames"):
        write_lossless_shards(six_frames, tmp_path / "short", samples=loaded[:5])


def test_shard_stats_are_per_frame_means(tmp_path):
    write_dataset(tmp_path / "jpeg", count=5, shard_size=2, codec="jpeg")
    stats = shard_stats(tmp_path / "jpeg")
    sizes = [len(s["jpg"]) for p in sorted((tmp_path / "jpeg").glob("*.tar")) for s in shards.iter_shard(p)]
    assert stats.codec == "jpeg" and stats.frames == 5
    assert stats.bytes_per_frame == pytest.approx(sum(sizes) / 5)
    assert (stats.object_psnr, stats.background_psnr) == (40.0, 30.0)  # what the fixture's JSON says


def test_shard_stats_share_scene_records_over_all_frames(tmp_path):
    """Scene mode: a scene record rides in the first sample that uses it; its bytes count for every frame."""
    meta = shards.sample_meta(8, 6, [[1.0, 1.0, 4.0, 4.0]], [0], "f.png", 33.0, 25.0)
    samples = [
        shards.ShardSample("f0", "rinr", b"a" * 100, meta, scenes={"s0": b"s" * 300}),
        shards.ShardSample("f1", "rinr", b"b" * 50, meta),
        shards.ShardSample("f2", "rinr", b"c" * 60, meta, scenes={"s1": b"t" * 90}),
    ]
    info = shards.write_shard(tmp_path, shards.shard_name("shard", 0), samples)
    shards.write_manifest(
        tmp_path,
        {
            "format": "rinr-shards",
            "version": shards.LAYOUT_VERSION,
            "codec": "rinr",
            "classes": ["a"],
            "shards": [info.manifest_entry()],
            "samples": 3,
        },
    )
    stats = shard_stats(tmp_path)
    assert stats.frames == 3 and stats.bytes_per_frame == pytest.approx((100 + 50 + 60 + 300 + 90) / 3)


def test_quality_scan_finds_the_matching_qualities(six_frames):
    scan = QualityScan(load_samples(six_frames))
    point = scan.at_object_psnr(32.0)
    assert point is not None and point.object_psnr >= 32.0
    assert point.quality == 1 or scan(point.quality - 1).object_psnr < 32.0
    assert scan.at_object_psnr(500.0) is None
    budget = scan(50).bytes_per_frame
    within = scan.at_bytes(budget)
    assert within.quality >= 50 and within.bytes_per_frame <= budget
    assert within.quality == 100 or scan(within.quality + 1).bytes_per_frame > budget
    assert scan.at_bytes(1.0).quality == 1  # nothing fits: the smallest quality
