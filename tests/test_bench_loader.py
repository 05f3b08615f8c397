"""tools/bench_loader.py's CPU-per-image measures and its loader runs, on tiny shards."""

from __future__ import annotations

import argparse

import torch
from shard_fixtures import write_dataset

from rinr_bench import bench_loader
from rinr_data.codecs.grid.packing import PackedGrids


def _args() -> argparse.Namespace:
    return argparse.Namespace(repeat=2, batch_size=4, epochs=2, cache_gib=0.1, step_ms=0.0)


def test_cpu_measures_and_runs_on_tiny_shards(tmp_path):
    write_dataset(tmp_path / "rinr", count=6, shard_size=3)
    write_dataset(tmp_path / "jpeg", count=6, shard_size=3, codec="jpeg")
    args = _args()
    (rinr_ms, jpeg_ms), paired = bench_loader.worker_cpu_ms([tmp_path / "rinr", tmp_path / "jpeg"], args)
    assert rinr_ms > 0 and jpeg_ms > 0 and paired > 0
    render = PackedGrids.render
    cached, held = bench_loader.cached_host_cpu_ms(tmp_path / "rinr", args, torch.device("cpu"))
    assert cached > 0 and held["enabled"] and held["replayed_epochs"] == args.epochs and held["frames"] == 6
    assert PackedGrids.render is render  # the synthesis stub is put back
    cpu = torch.device("cpu")
    for shards, nvjpeg in ((tmp_path / "rinr", False), (tmp_path / "jpeg", False), (tmp_path / "jpeg", True)):
        result = bench_loader.run(shards, 0, args, cpu, nvjpeg=nvjpeg)
        assert result["images_s"] > 0 and result["steps"] == args.epochs * 3  # 12 frames an epoch, 4 a batch
