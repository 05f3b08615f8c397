"""The record format: strict parsing, corruption always surfaces as FormatError, versioning by name."""

from __future__ import annotations

import hashlib
import json
import random
import struct
import zlib

import pytest
from conftest import DATA, smooth_frame

import rinr_data as R
from rinr_data import codecs
from rinr_data.codecs.paper import record
from rinr_data.format import container

CONFIGS = {"paper": R.PaperConfig(max_steps=20, eval_every=10, pixels_per_step=256), "grid": R.GridConfig(max_steps=20)}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def blob(request) -> bytes:
    """One record of every codec: the corruption tests hold for all of them."""
    return R.encode(smooth_frame(12, 16), [[1, 1, 6, 7], [8, 2, 15, 11]], CONFIGS[request.param])


def _refresh_crc(data: bytes) -> bytes:
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_pack_unpack_is_lossless(blob):
    assert R.pack_record(R.unpack_record(blob)) == blob


def test_header_fields(blob):
    head = container.read_header(blob)
    assert (head.height, head.width, head.n_boxes) == (12, 16, 2)
    assert codecs.for_record(blob).name in ("paper", "grid")
    assert blob[:4] == b"RINR" and blob[4] == R.FORMAT_VERSION


def test_every_truncation_raises_format_error(blob):
    for n in range(len(blob)):
        with pytest.raises(R.FormatError):
            R.decode(blob[:n])


def test_random_bit_flips_raise_format_error_only(blob):
    rng = random.Random(0)
    for _ in range(3000):
        data = bytearray(blob)
        for _ in range(rng.choice((1, 1, 2, 5))):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
        if bytes(data) == blob:
            continue
        with pytest.raises(R.FormatError):
            R.decode(bytes(data))


def test_checksum_valid_garbage_is_still_refused_cleanly(blob):
    # Flips behind a recomputed checksum reach the structural checks and the entropy decoder.
    rng = random.Random(1)
    outcomes = {"error": 0, "ok": 0}
    for _ in range(500):
        data = bytearray(blob)
        pos = rng.randrange(8, len(data) - 4)
        data[pos] ^= 1 << rng.randrange(8)
        mutated = _refresh_crc(bytes(data))
        try:
            img = R.decode(mutated)
        except R.FormatError:
            outcomes["error"] += 1
        else:
            # A flipped size can still parse (an entropy model near certainty costs no stream words): the image
            # then has the size its header declares, never anything else.
            head = container.read_header(mutated)
            assert img.shape == (3, head.height, head.width)
            outcomes["ok"] += 1
    assert outcomes["error"] > 0


def test_unknown_version_is_refused_by_name(blob):
    data = bytearray(blob)
    data[4] = 9
    with pytest.raises(R.FormatError, match="unsupported record format version 9"):
        R.decode(_refresh_crc(bytes(data)))


def test_unknown_codec_is_refused_by_name(blob):
    data = bytearray(blob)
    data[5] = 77
    with pytest.raises(R.FormatError, match=r"unknown codec id 77; known: 1 \(residual-siren\), 2 \(latent-grid\)"):
        R.decode(_refresh_crc(bytes(data)))


def test_not_a_record():
    with pytest.raises(R.FormatError, match="not a rinr record"):
        R.decode(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(R.FormatError, match="must be bytes"):
        R.decode("RINR")  # type: ignore[arg-type]


def test_huge_declared_counts_are_refused_before_allocating(blob):
    data = bytearray(blob)
    struct.pack_into("<H", data, 16, 4000)  # n_boxes: tables would need far more bytes than the blob has
    with pytest.raises(R.FormatError, match="truncated"):
        R.decode(_refresh_crc(bytes(data)))


def test_format_error_is_a_value_error():
    assert issubclass(R.FormatError, ValueError)


def _reference_record(coder: str) -> record.Record:
    """A record built from fixed integers: its bytes depend on the format and the coders, not on any fitting."""
    from rinr_bench.fuzz import paper_inr

    objects = [record.ObjectEntry((1.0, 2.0, 6.5, 9.0), 0.25, paper_inr(10, 3, 1))]
    return record.Record(12, 16, 30.0, paper_inr(6, 2, 0), objects, coder)


REFERENCE_SHA256 = {
    "raw": "df5fecaa282b361e89c46edbad4dc5493ccafc51b30797e67d77394950b33ced",  # 476 bytes
    "zstd": "e2043ccc4fba5645c3bf9e50e2288950c75a9ff0e6b89815b3555cb178a1ac7e",  # 486 bytes
    "brotli": "88e789b0bb9fc2f3392ebe7dc9d6fb69a14f70d1bec97489043194274969bdbe",  # 480 bytes
    "ans": "6ce68c5f436d2cc7a29f44fbdbf378d14d88cec2f3de9cdee60e0170be5acf06",  # 436 bytes
}


@pytest.mark.parametrize("coder", sorted(REFERENCE_SHA256))
def test_reference_bitstreams_are_stable(coder):
    """An accidental change of the layout or a coder changes these hashes: update them on purpose only."""
    blob = record.pack(_reference_record(coder))
    assert hashlib.sha256(blob).hexdigest() == REFERENCE_SHA256[coder]
    assert record.pack(record.unpack(blob)) == blob


@pytest.mark.parametrize("version", ["0.3.1", "0.5.0"])
def test_a_record_written_by_an_earlier_version_still_parses_repacks_and_decodes(version):
    """Format stability: grid records (context model, box-only level) kept in the repo, from rinr-data 0.3.1 (coder
    "ans") and 0.5.0 (coder "rans", the same latents), parse to the same latents, repack to the same bytes and decode
    to the quality their encoder measured."""
    import numpy as np
    import torch
    from PIL import Image

    from rinr_data.core.metrics import region_psnr

    folder = DATA / "records"
    meta = json.loads((folder / f"grid-{version}.json").read_text())
    blob = (folder / meta["file"]).read_bytes()
    rec = R.unpack_record(blob)
    assert rec.context is not None and rec.shape.box_levels == 1 and len(blob) == meta["bytes"]
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(lv, np.int32).tobytes() for lv in rec.latents))
    assert digest.hexdigest() == meta["latents_sha256"]
    assert R.pack_record(rec) == blob
    source = torch.from_numpy(np.array(Image.open(folder / meta["source"]).convert("RGB"))).permute(2, 0, 1)
    q = region_psnr(source, R.decode(blob), meta["boxes"])
    assert q.full == pytest.approx(meta["full_psnr"], abs=0.05)
    assert q.objects == pytest.approx(meta["object_psnr"], abs=0.05)
