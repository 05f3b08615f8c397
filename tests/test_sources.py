"""Dataset readers: format detection, boxes/labels/classes per format, bad input messages, resizing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rinr_data.sources import (
    SampleError,
    SourceError,
    detect_format,
    load_sample,
    open_source,
    parse_names_yaml,
    parse_size,
    target_size,
)

from conftest import DATA
from tiny_datasets import CLASSES, TRUTH, WRITERS, voc_xml, write_coco, write_csv, write_images, write_voc, write_yolo


def boxes_of(source):
    """key -> (pixel boxes, labels) after loading, so YOLO's normalised boxes are compared in pixels."""
    out = {}
    for item in source.items:
        s = load_sample(item)
        out[item.key] = (s.boxes.tolist(), s.labels)
    return out


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_each_format_is_detected_and_read(tmp_path, fmt):
    root = WRITERS[fmt](tmp_path / fmt)
    assert detect_format(root) == fmt
    source = open_source(root)
    assert source.format == fmt and len(source.items) == 3
    got = boxes_of(source)
    prefix = "train_" if fmt == "yolo" else ""
    assert sorted(got) == sorted(prefix + n for n in TRUTH)
    for name, (boxes, labels) in TRUTH.items():
        if fmt == "folder":
            assert got[prefix + name] == ([], [])
            continue
        assert source.classes == CLASSES
        np.testing.assert_allclose(got[prefix + name][0], boxes, atol=1e-9)
        assert got[prefix + name][1] == labels


def test_keys_have_no_dots_and_stay_unique(tmp_path):
    write_images(tmp_path, ["a.b", "a_b", "c d"])
    keys = [it.key for it in open_source(tmp_path).items]
    assert all("." not in k for k in keys)
    assert len(set(keys)) == 3 and sorted(keys) == ["a_b", "a_b-2", "c_d"]


def test_real_coco_frames(tmp_path):
    ann = json.loads((DATA / "vtest-dev" / "annotations.json").read_text())
    source = open_source(DATA / "vtest-dev")
    assert source.format == "coco" and source.classes == ["person"]
    assert [it.source for it in source.items] == [im["file_name"] for im in ann["images"]]
    first = ann["images"][0]["id"]
    want = [[x, y, x + w, y + h] for a in ann["annotations"] if a["image_id"] == first for x, y, w, h in [a["bbox"]]]
    sample = load_sample(source.items[0])
    assert sample.image.shape == (288, 384, 3) and sample.boxes.tolist() == want and sample.warnings == []


def test_source_order_and_fingerprint_are_stable(tmp_path):
    root = write_voc(tmp_path)
    a, b = open_source(root), open_source(root)
    assert [i.key for i in a.items] == [i.key for i in b.items] and a.fingerprint() == b.fingerprint()
    (root / "img_a.xml").write_text(voc_xml("img_a.png", [("cat", [1, 1, 5, 5])]))
    assert open_source(root).fingerprint() != a.fingerprint()


@pytest.mark.parametrize("text,names", [
    ("names: [cat, dog]\n", ["cat", "dog"]),
    ("nc: 2\nnames: ['cat', \"dog\"]  # two\n", ["cat", "dog"]),
    ("names:\n  - cat\n  - dog\ntrain: x\n", ["cat", "dog"]),
    ("names:\n  0: cat\n  1: dog\n", ["cat", "dog"]),
    ("names: {0: cat, 1: dog}\n", ["cat", "dog"]),
    ("train: images\n", None),
])
def test_minimal_yaml_names_parser(text, names):
    assert parse_names_yaml(text) == names


def test_yolo_names_mapping_and_missing_label_file(tmp_path):
    root = write_yolo(tmp_path, names_yaml="names:\n  0: cat\n  1: dog\n")
    (root / "labels" / "train" / "img_a.txt").unlink()
    source = open_source(root)
    assert source.classes == CLASSES
    assert boxes_of(source)["train_img_a"] == ([], [])


def test_resize_scales_boxes(tmp_path):
    source = open_source(write_coco(tmp_path))
    item = source.items[1]
    s = load_sample(item, size=(64, 12))
    assert s.image.shape == (12, 64, 3)
    np.testing.assert_allclose(s.boxes, np.array(TRUTH["img_b"][0]) * [2, 0.5, 2, 0.5])
    s = load_sample(item, max_side=16)
    assert s.image.shape == (12, 16, 3)
    np.testing.assert_allclose(s.boxes, np.array(TRUTH["img_b"][0]) * 0.5)
    assert load_sample(item, max_side=100).image.shape == (24, 32, 3)  # never upscales
    assert target_size(400, 300, max_side=200) == (200, 150)
    assert parse_size("64x48") == (64, 48)
    with pytest.raises(ValueError, match="WxH"):
        parse_size("64")


# ---------------------------------------------------------------------------------------------- bad input


def coco_with(tmp_path, boxes, category=1):
    truth = {"img_a": (boxes, [category - 1] * len(boxes))}
    root = write_coco(tmp_path, truth)
    return open_source(root).items[0]


def test_box_partly_outside_is_clipped_with_a_warning_naming_the_annotation(tmp_path):
    s = load_sample(coco_with(tmp_path, [[-3, 2, 10, 30]]))
    assert s.boxes.tolist() == [[0, 2, 10, 24]]
    assert len(s.warnings) == 1 and "annotations.json annotation id 100" in s.warnings[0]
    assert "clipped" in s.warnings[0]


@pytest.mark.parametrize("box,match", [
    ([5, 5, 5, 9], "zero area"),
    ([40, 5, 50, 9], "zero area"),  # entirely outside the image
    ([9, 5, 3, 9], "inverted"),
])
def test_zero_area_and_inverted_boxes_fail_naming_the_annotation(tmp_path, box, match):
    with pytest.raises(SampleError, match=f"annotations.json annotation id 100: box.*{match}"):
        load_sample(coco_with(tmp_path, [box]))


def test_missing_and_unreadable_images_name_the_file(tmp_path):
    root = write_coco(tmp_path)
    (root / "images" / "img_a.png").unlink()
    (root / "images" / "img_b.png").write_bytes(b"not a png")
    items = open_source(root).items
    with pytest.raises(SampleError, match="img_a.png: image not found"):
        load_sample(items[0])
    with pytest.raises(SampleError, match="img_b.png: cannot read image"):
        load_sample(items[1])
    assert load_sample(items[2]).boxes.shape == (3, 4)


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


def test_yolo_bad_line_and_unknown_class_name_file_and_line(tmp_path):
    root = write_yolo(tmp_path)
    (root / "labels" / "train" / "img_a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 oops 0.2\n")
    (root / "labels" / "train" / "img_b.txt").write_text("5 0.5 0.5 0.2 0.2\n")
    items = {it.key: it for it in open_source(root).items}
    with pytest.raises(SampleError, match=r"labels/train/img_a.txt line 2: expected 'class cx cy w h'"):
        load_sample(items["train_img_a"])
    with pytest.raises(SampleError, match=r"labels/train/img_b.txt line 1: unknown class 5; data.yaml names 2"):
        load_sample(items["train_img_b"])


def test_voc_malformed_xml_and_unknown_class(tmp_path):
    root = write_voc(tmp_path)
    (root / "img_a.xml").write_text("<annotation><object><name>cat</name>\n<bndbox></annotation>")
    items = {it.key: it for it in open_source(root).items}
    with pytest.raises(SampleError, match=r"img_a.xml: malformed XML at line 2"):
        load_sample(items["img_a"])
    items = {it.key: it for it in open_source(root, classes=["cat"]).items}
    with pytest.raises(SampleError, match=r"img_b.xml object 1: unknown class 'dog'"):
        load_sample(items["img_b"])


def test_voc_image_found_by_stem_when_xml_names_another_suffix(tmp_path):
    root = write_voc(tmp_path)
    (root / "img_a.xml").write_text(voc_xml("img_a.tif", [("cat", [1, 1, 5, 5])]))
    item = open_source(root).items[0]
    assert item.image_path.name == "img_a.png" and load_sample(item).boxes.tolist() == [[1, 1, 5, 5]]


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


def test_unknown_format_and_empty_folder(tmp_path):
    with pytest.raises(SourceError, match="no dataset found"):
        detect_format(tmp_path)
    with pytest.raises(ValueError, match="valid formats"):
        open_source(tmp_path, "kitti")
