"""rinr_bench.bench_codec end to end on a tiny COCO set: per-frame, scene and trade-off sections."""

from __future__ import annotations

import pytest
from test_accuracy_tools import tool
from tiny_datasets import write_coco


def test_bench_codec_writes_one_section_per_mode(tmp_path, capsys):
    write_coco(tmp_path / "data" / "coco")
    bench = tool("bench_codec")
    doc = tmp_path / "BENCHMARKS.md"
    common = [
        "--data",
        str(tmp_path / "data"),
        "--datasets",
        "coco",
        "--frames",
        "0",
        "--max-steps",
        "3",
        "--device",
        "cpu",
        "--quiet",
        "--plot",
        str(tmp_path / "rd.png"),
        "--write",
        str(doc),
    ]
    assert bench.main(common) == 0
    assert bench.main([*common, "--scene", "--scene-window", "3"]) == 0
    assert bench.main([*common, "--curve", "2,3"]) == 0
    text = doc.read_text()
    for section in ("grid", "grid-scene", "grid-curve"):
        begin, end = bench.markers(section)
        assert text.count(begin) == 1 and text.index(begin) < text.index(end)
    rows = [line for line in text.splitlines() if line.startswith("| coco |")]
    assert len(rows) == 2 and all("unreached" in r or "x)" in r for r in rows)
    assert "scene mode, window 3" in text and "scene bytes shared out" in text
    budgets = [line for line in text.splitlines() if line.startswith("- coco: frame records (mean bytes) latents in")]
    assert len(budgets) == 2 and "scene records latents in boxes 0," in budgets[1] and "box-only levels:" in budgets[0]
    curve = [line for line in text.splitlines() if line.startswith("| 2 |") or line.startswith("| 3 |")]
    assert len(curve) == 2
    assert (tmp_path / "rd_grid.png").exists() and (tmp_path / "rd_grid-scene.png").exists()
    plots = set(tmp_path.glob("*.png"))
    no_plot = [*common[: common.index("--plot")], "--plot", "", *common[common.index("--plot") + 2 :]]
    assert bench.main([*no_plot, "--section", "grid-noplot"]) == 0  # '' means no plot (it crashed)
    begin, end = bench.markers("grid-noplot")
    section = doc.read_text().split(begin)[1].split(end)[0]
    assert set(tmp_path.glob("*.png")) == plots and "| coco |" in section and "![RD plot]" not in section
    header = next(line for line in text.splitlines() if line.startswith("| dataset |")).split(" | ")
    cells = dict(zip(header, rows[0].split(" | ")))
    outside, _, inside = cells["detail outside / inside boxes"].partition(" / ")
    assert float(outside) >= 0 and float(inside.split()[0]) >= 0  # 3 fitting steps: near-flat frames
    assert "unreached" in cells["jpeg-both bytes (x)"] or "x)" in cells["jpeg-both bytes (x)"]
    # Uniform-quality records: no box-only level on any frame, said in the settings and the byte budget.
    assert bench.main([*common, "--box-levels", "0", "--section", "grid-box0"]) == 0
    box0 = doc.read_text().split(bench.markers("grid-box0")[0])[1]
    assert "at most 0 box-only levels" in box0 and "box-only levels: 3 frame(s) 0" in box0
    with pytest.raises(SystemExit):
        bench.main([*common, "--box-levels", "6"])
    assert "--box-levels" in capsys.readouterr().err
    # Run again: each section is replaced, not appended.
    assert bench.main(common) == 0
    assert doc.read_text().count(bench.markers("grid")[0]) == 1


def test_frames_are_spread_or_consecutive(tmp_path):
    truth = {f"f{i}": ([[1, 1, 6, 6]], [0]) for i in range(6)}
    write_coco(tmp_path / "coco", truth)
    bench = tool("bench_codec")
    everything = bench.load_frames(tmp_path / "coco", 0)[2]
    assert len(everything) == 6
    assert bench.load_frames(tmp_path / "coco", 2)[2] == [everything[0], everything[3]]
    assert bench.load_frames(tmp_path / "coco", 2, consecutive=True)[2] == everything[:2]
