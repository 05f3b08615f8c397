"""tools/bench_parse.py: both coders over the same records, the same integers either way."""

from __future__ import annotations

import re

import numpy as np
from shard_fixtures import write_dataset

from rinr_bench import bench_parse
from rinr_data.codecs.grid import record as grid_record


def test_bench_parse_repacks_every_record_with_both_coders(tmp_path, capsys):
    write_dataset(tmp_path / "ds", count=3, shard_size=2)
    parsed = bench_parse.records(tmp_path / "ds")
    assert len(parsed) == 3
    for rec in parsed:
        for coder in (grid_record.ANS, grid_record.RANS):
            rec.coder = coder
            again = grid_record.unpack(grid_record.pack(rec))
            assert again.coder == coder
            assert all(np.array_equal(a, b) for a, b in zip(again.latents, rec.latents))
    assert bench_parse.main([str(tmp_path / "ds"), "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (3 ans|4 rans)[^|]*\| ([\d,]+)", out, re.M)
    assert [r[0] for r in rows] == ["3 ans", "4 rans"] and all(int(r[1].replace(",", "")) > 0 for r in rows)
