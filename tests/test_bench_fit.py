"""rinr_bench.bench_fit end to end on a tiny COCO set: both renderers fit, and to the same quality."""

from __future__ import annotations

from test_accuracy_tools import tool
from tiny_datasets import write_coco


def test_bench_fit_prints_both_renderers_at_the_same_quality(tmp_path, capsys):
    write_coco(tmp_path / "coco")
    assert tool("bench_fit").main(["--data", str(tmp_path / "coco"), "--frames", "2", "--steps", "4"]) == 0
    rows = [
        line.split(" | ")
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| render") and "s/step" not in line
    ]
    assert [r[0] for r in rows] == ["| render (reference)", "| render_dense"]
    assert rows[0][2] == "1.00x" and float(rows[1][2].rstrip("x")) > 0
    reference, dense = ([float(v.strip(" |")) for v in r[3:5]] for r in rows)
    # Four steps of the same fit: the renderers differ by float rounding only.
    assert all(abs(a - b) < 0.05 for a, b in zip(reference, dense)), (reference, dense)
