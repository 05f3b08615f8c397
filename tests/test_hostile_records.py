"""Hostile records and shards against the parser and the dataset: bombs, lies in the JSON, mistyped paths, cuts."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_frame
from shard_fixtures import write_dataset

import rinr_data as R
from rinr_data.codecs.grid import record as grid_record
from rinr_data.format import container
from rinr_data.pipeline.dataset import RINRDataset

TINY = R.GridConfig(max_steps=30)


def _resized(blob: bytes, height: int, width: int) -> bytes:
    """The record with another declared frame size and a valid checksum."""
    body = bytearray(blob[:-4])
    struct.pack_into("<HH", body, 8, height, width)
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def _without_payload(blob: bytes) -> bytes:
    """The grid record with its entropy-coded payload emptied (length 0) and a valid checksum."""
    from rinr_data.format import entropy

    rec = grid_record.unpack(blob)
    coder = entropy.rans_compress if rec.coder == grid_record.RANS else entropy.laplace_compress
    payload = coder(grid_record._plan(rec).chunks)
    body = blob[: len(blob) - 4 - len(payload) - 4] + struct.pack("<I", 0)
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.fixture(scope="module")
def grid_blob() -> bytes:
    return R.encode(smooth_frame(16, 20), [[2, 2, 12, 12]], TINY)


@pytest.fixture(scope="module")
def paper_blob() -> bytes:
    return R.encode(smooth_frame(16, 20), [[2, 2, 12, 12]], R.PaperConfig(max_steps=2, eval_every=2))


@pytest.mark.parametrize("kind", ["grid", "paper"])
def test_a_record_declaring_a_huge_frame_is_refused_before_decoding(kind, grid_blob, paper_blob):
    blob = grid_blob if kind == "grid" else paper_blob
    for height, width in ((4096, 16384), (16384, 16384)):
        with pytest.raises(R.FormatError, match="MAX_IMAGE_PIXELS"):
            R.decode(_resized(blob, height, width))


def test_the_pixel_limit_is_documented_and_adjustable(grid_blob, monkeypatch):
    assert container.MAX_IMAGE_PIXELS == 4096 * 4096
    monkeypatch.setattr(container, "MAX_IMAGE_PIXELS", 16 * 20 - 1)
    with pytest.raises(R.FormatError, match=r"20x16 frame \(320 pixels\) exceeds MAX_IMAGE_PIXELS \(319\)"):
        R.unpack_record(grid_blob)
    monkeypatch.setattr(container, "MAX_IMAGE_PIXELS", 16 * 20)
    assert R.decode(grid_blob).shape == (3, 16, 20)


def test_a_record_whose_synthesis_would_take_tera_macs_is_refused():
    # Found while fuzzing: 121 bytes, 4096x4096 pixels (within MAX_IMAGE_PIXELS) through eight 255-wide layers:
    # ~35 GiB and minutes to decode. The decode cost in multiply-accumulates is bounded as well.
    from rinr_data.codecs.grid.model import GridShape
    from rinr_data.format.quantize import QuantizedTensor

    shape = GridShape(levels=1, hidden=(255,) * 8)
    latents = [np.zeros(size, np.int32) for size in shape.level_sizes(480, 640)]  # 0.3 Mpixels suffice here
    synthesis = [QuantizedTensor(np.zeros(n, np.int32), 1.0, 8) for fi, fo in shape.layer_dims() for n in (fi * fo, fo)]
    blob = R.pack_record(grid_record.GridRecord(480, 640, shape, 8, [], latents, synthesis))
    assert len(blob) < 300  # the tabulated coder spends ~0.002 bits on each of the 0.5 M zero weights
    with pytest.raises(R.FormatError, match="MAX_DECODE_MACS"):
        R.unpack_record(blob)


def test_an_empty_payload_cannot_claim_latents(grid_blob):
    rec = grid_record.unpack(grid_blob)
    assert any(int(np.abs(lat).max()) > 0 for lat in rec.latents)
    with pytest.raises(R.FormatError, match="empty payload, but the level table declares latents"):
        R.unpack_record(_without_payload(grid_blob))


def _edit_member(shard: Path, key: str, ext: str, edit) -> None:
    """Rewrite one member of a shard in place (the manifest's checksum is left stale on purpose)."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for m, data in members:
            if m.name == f"{key}.{ext}":
                data = edit(data)
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))


def _keys(ds: RINRDataset) -> list[str]:
    return [k for batch in ds for k in batch.keys]


def _json_edit(**changes):
    def edit(data: bytes) -> bytes:
        meta = json.loads(data)
        meta.update(changes)
        return json.dumps(meta).encode()

    return edit


def test_labels_outside_the_manifests_classes_are_a_damaged_sample(tmp_path):
    keys = write_dataset(tmp_path / "ds", count=6, shard_size=3)
    _edit_member(tmp_path / "ds" / "shard-000000.tar", keys[1], "json", _json_edit(labels=[99]))
    with pytest.raises(
        R.FormatError,
        match=r"sample 'frame_001': label 99 is not a class index: the manifest has 2 class\(es\) \(0 to 1\)",
    ):
        _keys(RINRDataset(tmp_path / "ds", batch_size=2, shuffle=False, device="cpu"))
    ds = RINRDataset(tmp_path / "ds", batch_size=2, shuffle=False, device="cpu", on_error="skip")
    assert _keys(ds) == [k for k in keys if k != keys[1]] and ds.errors == 1


def test_boxes_in_the_json_must_be_the_records(tmp_path):
    keys = write_dataset(tmp_path / "ds", count=3, shard_size=3)
    _edit_member(tmp_path / "ds" / "shard-000000.tar", keys[1], "json", _json_edit(boxes=[[0.0, 0.0, 5.0, 5.0]]))
    with pytest.raises(R.FormatError, match="sample 'frame_001': record boxes .* differ from its json boxes"):
        _keys(RINRDataset(tmp_path / "ds", batch_size=1, shuffle=False, device="cpu"))
    # The boxes served are the record's: the one source of truth, the same numbers the JSON holds when intact.
    ds = RINRDataset(tmp_path / "ds", batch_size=3, shuffle=False, device="cpu", on_error="skip")
    (batch,) = list(ds)
    with tarfile.open(tmp_path / "ds" / "shard-000000.tar") as tar:
        record = R.unpack_record(tar.extractfile(f"{keys[2]}.rinr").read())
    assert list(batch.keys) == [keys[0], keys[2]]
    assert np.array_equal(batch.boxes[1].numpy(), np.asarray(record.boxes, np.float32).reshape(-1, 4))


@pytest.mark.parametrize("on_error", ["raise", "warn", "skip"])
def test_nothing_at_the_path_is_an_error_under_every_policy(tmp_path, on_error):
    write_dataset(tmp_path / "ds", count=2, shard_size=2)
    for wrong in (tmp_path / "dss", tmp_path / "ds" / "shard-{000000..000003}.tar", [str(tmp_path / "nope.tar")]):
        with pytest.raises(R.FormatError, match="no such shard file or dataset folder"):
            RINRDataset(wrong, batch_size=1, device="cpu", on_error=on_error)


def test_a_truncated_shard_keeps_its_intact_samples_under_skip(tmp_path):
    keys = write_dataset(tmp_path / "ds", count=6, shard_size=3)
    shard = tmp_path / "ds" / "shard-000000.tar"
    with tarfile.open(shard) as tar:
        offsets = {m.name: m.offset for m in tar.getmembers()}
    data = shard.read_bytes()
    shard.write_bytes(data[: offsets[f"{keys[2]}.rinr"] + 700])  # cut inside the third sample
    ds = RINRDataset(tmp_path / "ds", batch_size=1, shuffle=False, device="cpu", on_error="skip")
    assert _keys(ds) == keys[:2] + keys[3:] and ds.errors == 1
    with pytest.raises(R.FormatError, match="shard-000000.tar"):
        _keys(RINRDataset(tmp_path / "ds", batch_size=1, shuffle=False, device="cpu"))
