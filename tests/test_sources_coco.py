"""COCO reader: real frames, unknown categories, bad boxes, malformed JSON."""

from __future__ import annotations

import json

import pytest
from conftest import DATA
from tiny_datasets import write_coco

from rinr_data.sources import SampleError, SourceError, load_sample, open_source


def test_real_coco_frames(tmp_path):
    ann = json.loads((DATA / "vtest-dev" / "annotations.json").read_text())
    source = open_source(DATA / "vtest-dev")
    assert source.format == "coco" and source.classes == ["person"]
    assert [it.source for it in source.items] == [im["file_name"] for im in ann["images"]]
    first = ann["images"][0]["id"]
    want = [[x, y, x + w, y + h] for a in ann["annotations"] if a["image_id"] == first for x, y, w, h in [a["bbox"]]]
    sample = load_sample(source.items[0])
    assert sample.image.shape == (288, 384, 3) and sample.boxes.tolist() == want and sample.warnings == []


def test_coco_unknown_category_and_bad_bbox(tmp_path):
    root = write_coco(tmp_path)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][0]["category_id"] = 7
    data["annotations"][1]["bbox"] = [1, 2, 3]
    (root / "annotations.json").write_text(json.dumps(data))
    items = open_source(root).items
    with pytest.raises(SampleError, match=r"annotation id 100: unknown class: category_id 7"):
        load_sample(items[0])
    with pytest.raises(SampleError, match=r"annotation id 101: bbox must be 4 finite numbers"):
        load_sample(items[1])


def test_malformed_coco_json_names_file_and_line(tmp_path):
    root = write_coco(tmp_path)
    (root / "annotations.json").write_text('{"images": [\n{"id": 1,,}\n], "annotations": []}')
    with pytest.raises(SourceError, match=r"annotations.json: malformed JSON at line 2"):
        open_source(root, "coco")
