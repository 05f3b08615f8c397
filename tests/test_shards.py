"""Shard layout: members, atomic write-then-rename, determinism, manifest checks, and reading with plain webdataset."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from rinr_data import shards
from rinr_data.core.jsonable import jsonable
from rinr_data.errors import FormatError


def sample(key: str, codec: str = "rinr", n_boxes: int = 1) -> shards.ShardSample:
    boxes = [[1, 2, 3.25, 4]] * n_boxes
    meta = shards.sample_meta(32, 24, boxes, [0] * n_boxes, f"{key}.png", 30.5, math.nan)
    return shards.ShardSample(key, codec, f"image bytes of {key}".encode(), meta)


def test_sample_members_and_json_fields():
    m = sample("k0").members()
    assert set(m) == {"__key__", "rinr", "json"}
    meta = json.loads(m["json"])
    assert set(meta) == set(shards.JSON_FIELDS)
    assert meta["boxes"] == [[1.0, 2.0, 3.25, 4.0]] and meta["labels"] == [0]
    assert meta["object_psnr"] == 30.5 and meta["background_psnr"] is None  # NaN is not JSON
    assert set(sample("k0", "jpeg").members()) == {"__key__", "jpg", "json"}


def test_keys_with_dots_are_rejected():
    with pytest.raises(ValueError, match="free of dots"):
        sample("a.b").members()


def test_json_boxes_are_the_float32_values_a_record_stores():
    assert shards.stored_boxes([[0.1, 1, 2, 3]])[0][0] == float(__import__("numpy").float32(0.1))


def test_write_shard_is_atomic_and_deterministic(tmp_path):
    info = shards.write_shard(
        tmp_path,
        "s-000000.tar",
        [sample("a"), sample("b", n_boxes=2)],
        skipped=[{"key": "c", "source": "c.png", "error": "bad"}],
    )
    path = tmp_path / "s-000000.tar"
    assert info.samples == 2 and info.bytes == path.stat().st_size and info.sha256 == shards.sha256_file(path)
    assert not list(shards.work_dir(tmp_path).glob("*.partial"))
    assert shards.read_shard_info(tmp_path, "s-000000.tar") == info  # from the per-shard report
    again = shards.write_shard(tmp_path / "other", "s-000000.tar", [sample("a"), sample("b", n_boxes=2)])
    assert again.sha256 == info.sha256  # fixed mtime/owner: same samples, same bytes
    read = list(shards.iter_shard(path))
    assert [s["__key__"] for s in read] == ["a", "b"]
    assert read[0]["rinr"] == b"image bytes of a" and shards.image_member(read[0]) == ("rinr", b"image bytes of a")
    assert shards.sample_json(read[1])["boxes"] == [[1.0, 2.0, 3.25, 4.0]] * 2


def test_failed_shard_leaves_no_final_file(tmp_path):
    def samples():
        yield sample("a")
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError):
        shards.write_shard(tmp_path, "s-000000.tar", samples())
    assert not (tmp_path / "s-000000.tar").exists()
    assert not list(shards.work_dir(tmp_path).glob("*.partial"))


def test_report_missing_recomputes_from_the_tar(tmp_path):
    info = shards.write_shard(tmp_path, "s-000000.tar", [sample("a")])
    shards.report_path(tmp_path, "s-000000.tar").unlink()
    again = shards.read_shard_info(tmp_path, "s-000000.tar")
    assert (again.samples, again.sha256, again.skipped) == (1, info.sha256, [])


def test_reading_broken_shards_and_samples(tmp_path):
    (tmp_path / "bad.tar").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(FormatError, match="bad.tar"):
        list(shards.iter_shard(tmp_path / "bad.tar"))
    with pytest.raises(FormatError, match="no .json member"):
        shards.sample_json({"__key__": "k", "rinr": b""})
    with pytest.raises(FormatError, match="lacks"):
        shards.sample_json({"__key__": "k", "json": b"{}"})
    with pytest.raises(FormatError, match="one image member"):
        shards.image_member({"__key__": "k", "json": b"{}"})


def test_manifest_round_trip_and_checks(tmp_path):
    manifest = {
        "format": "rinr-shards",
        "version": shards.LAYOUT_VERSION,
        "classes": ["a"],
        "codec_config": jsonable({"max_area": math.inf}),
        "shards": [],
    }
    shards.write_manifest(tmp_path, manifest)
    assert shards.read_manifest(tmp_path)["codec_config"] == {"max_area": "inf"}
    shards.write_manifest(tmp_path, {**manifest, "version": 99})
    with pytest.raises(FormatError, match="layout version 99"):
        shards.read_manifest(tmp_path)
    (tmp_path / shards.MANIFEST).write_text("{")
    with pytest.raises(FormatError, match="malformed JSON"):
        shards.read_manifest(tmp_path)


def test_find_shards_in_a_folder_without_manifest(tmp_path):
    for i in (1, 0):
        shards.write_shard(tmp_path, shards.shard_name("p", i), [sample(f"k{i}")])
    found, manifest = shards.find_shards([tmp_path])
    assert [p.name for p in found] == ["p-000000.tar", "p-000001.tar"] and manifest is None


PLAIN_WEBDATASET = r"""
import json, sys
import webdataset as wds
assert "rinr_data" not in sys.modules
url, ext = sys.argv[1], sys.argv[2]
rows = []
for s in wds.WebDataset(url, shardshuffle=False):
    meta = json.loads(s["json"])
    rows.append([s["__key__"], len(s[ext]), meta["boxes"], meta["labels"], meta["width"], meta["height"]])
assert "rinr_data" not in sys.modules
print(json.dumps(rows))
"""


def read_with_plain_webdataset(url: str, ext: str = "rinr") -> list:
    """Iterate shards with webdataset alone, in a fresh interpreter that never imports rinr_data."""
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_WEBDATASET, url, ext], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_plain_webdataset_reads_written_shards(tmp_path):
    for i in range(2):
        shards.write_shard(tmp_path, shards.shard_name("p", i), [sample(f"k{i}a"), sample(f"k{i}b", n_boxes=3)])
    rows = read_with_plain_webdataset(str(tmp_path / "p-{000000..000001}.tar"))
    assert [r[0] for r in rows] == ["k0a", "k0b", "k1a", "k1b"]
    assert rows[1][2] == [[1.0, 2.0, 3.25, 4.0]] * 3 and rows[1][3] == [0, 0, 0] and rows[1][4:] == [32, 24]


def test_count_samples_groups_members_as_the_reader_does(tmp_path):
    import io
    import tarfile

    members = ["a.json", "a.rinr", "a.s0.scene", "b.json", "b.rinr", "__meta__", "noext", "c.json", "c.jpg"]
    path = tmp_path / "hand.tar"
    with tarfile.open(path, "w") as tar:
        tar.addfile(tarfile.TarInfo("folder"))  # a non-regular member, skipped by both
        for name in members:
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"xyz"))
    with open(path, "rb") as stream:
        expected = [s["__key__"] for s in shards.tar_samples(stream, path.name)]
    with open(path, "rb") as stream:
        assert shards.count_samples(stream, path.name) == len(expected) == 3
    path.write_bytes(path.read_bytes()[:2100])  # cut inside the data of a.rinr: the reader fails there too
    for read in (lambda s: list(shards.tar_samples(s, path.name)), lambda s: shards.count_samples(s, path.name)):
        with open(path, "rb") as stream, pytest.raises(FormatError, match="hand.tar: cannot read shard"):
            read(stream)


def test_every_member_kind_a_codec_holds_has_one_shard_extension():
    from rinr_data import codecs

    assert set(shards.IMAGE_EXTENSIONS) == set(codecs.MEMBERS)
    assert len(set(shards.IMAGE_EXTENSIONS.values())) == len(shards.IMAGE_EXTENSIONS)
