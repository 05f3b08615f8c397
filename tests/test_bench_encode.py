"""rinr_bench.bench_encode end to end on a tiny COCO set: the sample and the evaluated frames never meet, both modes
are timed and written to the benchmark file."""

from __future__ import annotations

import pytest
from test_accuracy_tools import tool
from test_cli_encode import many
from tiny_datasets import write_coco


def test_the_evaluated_frames_are_never_in_the_warm_start_sample():
    split = tool("bench_encode").split
    for n, sample, frames in ((200, 8, 8), (10, 3, 7), (5, 0, 5)):
        picked, evaluated = split(n, sample, frames)
        assert len(picked) == sample and len(evaluated) == frames == len(set(evaluated))
        assert not set(picked) & set(evaluated) and all(0 <= i < n for i in evaluated)
    with pytest.raises(ValueError, match="fewer than 5"):
        split(8, 4, 5)


def test_bench_encode_times_both_modes_and_writes_its_section(tmp_path, capsys):
    write_coco(tmp_path / "coco", many(6))
    doc = tmp_path / "BENCH.md"
    doc.write_text("# Benchmarks\n")
    args = ["--data", str(tmp_path / "coco"), "--frames", "2", "--sample", "2", "--max-steps", "6"]
    assert tool("bench_encode").main([*args, "--warm-steps", "3", "--batch", "2", "--write", str(doc)]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| from scratch")]
    rows += [line.split("|") for line in doc.read_text().splitlines() if line.startswith("| warm start")]
    assert [r[1].strip() for r in rows] == ["from scratch", "warm start"]
    # Warm frames below a target after their 3 steps take one more (a third of the budget, rounded down).
    assert rows[0][2].strip() == "6" and rows[1][2].strip() in ("3", "4", "4 (3-4)") and rows[0][9].strip() == "1.000x"
    assert "<!-- bench_encode:begin -->" in doc.read_text() and "took" in doc.read_text()
    # How the fit ran is part of the command the section records (the tiny frames stay eager under "auto").
    assert "--compile auto --precision auto`" in doc.read_text()


def test_bench_encode_runs_the_warm_fits_once_per_job_count(tmp_path, capsys):
    write_coco(tmp_path / "coco", many(6))
    args = ["--data", str(tmp_path / "coco"), "--frames", "2", "--sample", "2", "--max-steps", "6", "--warm-steps", "3"]
    assert tool("bench_encode").main([*args, "--batch", "1", "--jobs", "1,2", "--no-scratch", "--write", ""]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| warm start")]
    assert [r[1].strip() for r in rows] == ["warm start, 1 job", "warm start, 2 jobs"]
    # One torch thread per fit either way (the tests run on one): the same records, so the same bytes and PSNRs.
    assert [r[5:8] for r in rows[1:]] == [rows[0][5:8]]


def test_bench_encode_runs_the_warm_fits_once_per_precision(tmp_path, capsys):
    write_coco(tmp_path / "coco", many(6))
    args = ["--data", str(tmp_path / "coco"), "--frames", "2", "--sample", "2", "--max-steps", "6", "--warm-steps", "3"]
    doc = tmp_path / "BENCH.md"
    doc.write_text("# Benchmarks\n")
    precisions = ["--precision", "float32,bfloat16", "--no-scratch", "--write", str(doc)]
    assert tool("bench_encode").main([*args, "--batch", "2", *precisions]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| warm start")]
    assert [r[1].strip() for r in rows] == ["warm start, float32", "warm start, bfloat16"]
    # From the one warm start, the render's rounding gives other records: bytes against the float32 row.
    assert rows[0][9].strip() == "1.000x" and float(rows[1][9].strip()[:-1]) == pytest.approx(1.0, abs=0.1)
    assert "--precision float32,bfloat16`" in doc.read_text()
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16, got 'half'"):
        tool("bench_encode").main([*args, "--precision", "half"])
