"""Dataset readers, across formats: detection, reading, keys, fingerprints, loading, clipping and resizing."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_datasets import CLASSES, TRUTH, WRITERS, voc_xml, write_coco, write_images, write_voc

from rinr_data.sources import SampleError, SourceError, detect_format, load_sample, open_source, parse_size, target_size


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


def test_source_order_and_fingerprint_are_stable(tmp_path):
    root = write_voc(tmp_path)
    a, b = open_source(root), open_source(root)
    assert [i.key for i in a.items] == [i.key for i in b.items] and a.fingerprint() == b.fingerprint()
    (root / "img_a.xml").write_text(voc_xml("img_a.png", [("cat", [1, 1, 5, 5])]))
    assert open_source(root).fingerprint() != a.fingerprint()


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


@pytest.mark.parametrize(
    "box,match",
    [
        ([5, 5, 5, 9], "zero area"),
        ([40, 5, 50, 9], "zero area"),  # entirely outside the image
        ([9, 5, 3, 9], "inverted"),
    ],
)
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


def test_unknown_format_and_empty_folder(tmp_path):
    with pytest.raises(SourceError, match="no dataset found"):
        detect_format(tmp_path)
    with pytest.raises(ValueError, match="valid formats"):
        open_source(tmp_path, "kitti")
