"""tools/bench_scaleout.py on a tiny subset: torchrun runs of 1 and 2 processes, the same shards, a table."""

from __future__ import annotations

import pytest
from conftest import DATA

from rinr_bench import bench_scaleout

TINY = ["--max-side", "48", "--max-steps", "20", "--warm-steps", "5", "--warm-frames", "2"]


def test_one_and_two_processes_write_the_same_shards(tmp_path, capsys):
    argv = ["--data", str(DATA / "vtest-dev"), "--frames", "4", "--shard-size", "2", "--procs", "1,2"]
    assert bench_scaleout.main([*argv, "--work", str(tmp_path), "--", *TINY]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and rows[0].endswith("| 1.00 |")
    assert sorted(p.name for p in (tmp_path / "procs2").glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]


def test_shards_that_differ_between_runs_are_reported(tmp_path, monkeypatch):
    def fake(src, out, procs, threads, options):
        out.mkdir(parents=True, exist_ok=True)
        (out / "shard-000000.tar").write_bytes(b"x" * procs)  # a record that depends on the process count
        return 1.0

    monkeypatch.setattr(bench_scaleout, "run_encode", fake)
    argv = ["--data", str(DATA / "vtest-dev"), "--frames", "2", "--procs", "1,2", "--work", str(tmp_path)]
    with pytest.raises(SystemExit, match="scale-out changed the records"):
        bench_scaleout.main([*argv, "--", *TINY[:2], "--warm-frames", "0"])
    with pytest.raises(SystemExit, match="--procs"):
        bench_scaleout.main([*argv[:4], "--procs", "0", "--work", str(tmp_path)])
