"""DeepForest CSV reader: bad rows, empty-image rows, unknown classes, missing columns."""

from __future__ import annotations

import pytest
from tiny_datasets import write_csv

from rinr_data.sources import SampleError, SourceError, load_sample, open_source


def test_csv_errors_name_file_and_line(tmp_path):
    root = write_csv(tmp_path)
    text = (root / "annotations.csv").read_text().splitlines()
    text[1] = "img_a.png,2,x,12,14,cat"
    text.append("img_d.png,0,0,0,0,cat")  # DeepForest's "no objects" row (image missing on disk)
    (root / "annotations.csv").write_text("\n".join(text) + "\n")
    items = {it.key: it for it in open_source(root).items}
    with pytest.raises(SampleError, match=r"annotations.csv line 2: xmin, ymin, xmax, ymax must be numbers"):
        load_sample(items["img_a"])
    assert items["img_d"].boxes == [] and items["img_d"].error is None
    items = {it.key: it for it in open_source(root, classes=["dog"]).items}
    with pytest.raises(SampleError, match=r"annotations.csv line 4: unknown class 'cat'"):
        load_sample(items["img_b"])
    (root / "annotations.csv").write_text("path,xmin\nimg_a.png,1\n")
    with pytest.raises(SourceError, match=r"annotations.csv line 1: missing column"):
        open_source(root, "csv")
