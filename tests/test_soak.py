"""Long runs (issue 22): decoding records and iterating a dataset over and over keeps resident memory flat.

Each test runs a warm-up (first-use allocations: torch kernels, allocator pools, caches), reads the resident set,
runs on, and reads it again: a leak of even a few hundred bytes per record or batch shows as growth. The `short`
cases run in `make test` with a loose bound; the `soak` cases (pytest -m soak) run thousands of records and many
epochs with a bound of a few MiB.
"""

from __future__ import annotations

import gc
import os
import tarfile
from pathlib import Path

import pytest
from shard_fixtures import write_dataset

import rinr_data as R
from rinr_bench.fuzz import record_blobs
from rinr_data.format.container import scene_id
from rinr_data.pipeline.dataset import RINRDataset
from rinr_data.pipeline.loader import RINRLoader

MIB = 1 << 20


def resident_mib() -> float:
    """Resident set size of this process in MiB, after a full garbage collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def damaged(blob: bytes) -> list[bytes]:
    """Ways a record fails: cut, a flipped byte behind its checksum, garbage."""
    return [blob[: len(blob) // 2], blob[:20] + bytes([blob[20] ^ 0x40]) + blob[21:], b"RINR" + bytes(40)]


@pytest.mark.parametrize(
    "warmup,rounds,bound_mib",
    [pytest.param(20, 40, 16.0, id="short"), pytest.param(200, 2500, 4.0, id="long", marks=pytest.mark.soak)],
)
def test_decoding_records_over_and_over_keeps_memory_flat(warmup, rounds, bound_mib):
    blobs = record_blobs()  # grid (plain, context, scene, scene frame), paper (4 coders), the real 128x96 record
    scenes = {scene_id(blobs[2]): blobs[2]}
    bad = [d for b in blobs for d in damaged(b)]
    decoded = refused = 0
    for i in range(warmup + rounds):
        if i == warmup:
            before = resident_mib()
        images = R.decode_batch(blobs, scenes=scenes)
        decoded += len(images)
        for data in bad:
            try:
                R.decode(data)
            except R.FormatError:
                refused += 1
    grown = resident_mib() - before
    assert decoded == len(blobs) * (warmup + rounds) and refused == len(bad) * (warmup + rounds)
    assert grown < bound_mib, f"resident memory grew {grown:.1f} MiB over {rounds * len(blobs)} records"


def cut_inside_second_sample(shard: Path) -> None:
    """Truncate a shard inside its second sample's image member: its first sample stays whole."""
    with tarfile.open(shard) as tar:
        second = [m for m in tar.getmembers() if m.name.endswith(".rinr")][1]
    shard.write_bytes(shard.read_bytes()[: second.offset_data + 8])


@pytest.mark.parametrize(
    "warmup,epochs,bound_mib",
    [pytest.param(5, 30, 16.0, id="short"), pytest.param(50, 2000, 4.0, id="long", marks=pytest.mark.soak)],
)
def test_many_epochs_over_a_dataset_with_a_damaged_shard_keep_memory_flat(tmp_path, warmup, epochs, bound_mib):
    keys = write_dataset(tmp_path / "ds", count=6, shard_size=2)
    cut_inside_second_sample(tmp_path / "ds" / "shard-000002.tar")
    ds = RINRDataset(tmp_path / "ds", batch_size=2, device="cpu", on_error="skip")
    loader = RINRLoader(ds)
    for epoch in range(warmup + epochs):
        if epoch == warmup:
            before = resident_mib()
        seen = [k for batch in loader for k in batch["keys"]]
        assert sorted(seen) == sorted(keys[:5])  # every epoch: all intact samples, none of the cut one, no repeats
    grown = resident_mib() - before
    assert ds.errors == warmup + epochs  # the damaged shard is reported once per epoch, never silently dropped
    assert grown < bound_mib, f"resident memory grew {grown:.1f} MiB over {epochs} epochs"
