"""YOLO reader: class names from data.yaml, missing label files, bad label lines and unknown classes."""

from __future__ import annotations

import pytest
from tiny_datasets import CLASSES, write_yolo

from rinr_data.sources import SampleError, SourceError, class_names_from_yaml, load_sample, open_source


@pytest.mark.parametrize(
    "text,names",
    [
        ("names: [cat, dog]\n", ["cat", "dog"]),
        ("nc: 2\nnames: ['cat', \"dog\"]  # two\n", ["cat", "dog"]),
        ("names:\n  - cat\n  - dog\ntrain: x\n", ["cat", "dog"]),
        ("names:\n  0: cat\n  1: dog\n", ["cat", "dog"]),
        ("names: {0: cat, 1: dog}\n", ["cat", "dog"]),
        ("train: images\n", None),
    ],
)
def test_data_yaml_names_as_list_or_mapping(text, names):
    assert class_names_from_yaml(text) == names


@pytest.mark.parametrize(
    "text,match",
    [
        ("names: [cat\n", r"data.yaml: malformed YAML"),
        ("names: cat\n", r"data.yaml: 'names' must be a list or an index: name mapping"),
        ("names:\n  0: cat\n  2: dog\n", r"data.yaml: names mapping must cover indices 0..1, got \[0, 2\]"),
        ("names:\n  a: cat\n", r"data.yaml: names mapping keys must be class indices"),
    ],
)
def test_bad_data_yaml_fails_naming_the_file(tmp_path, text, match):
    root = write_yolo(tmp_path, names_yaml=text)
    with pytest.raises(SourceError, match=match) as info:
        open_source(root)
    assert str(root / "data.yaml") in str(info.value)


def test_yolo_names_mapping_and_missing_label_file(tmp_path):
    root = write_yolo(tmp_path, names_yaml="names:\n  0: cat\n  1: dog\n")
    (root / "labels" / "train" / "img_a.txt").unlink()
    source = open_source(root)
    assert source.classes == CLASSES
    sample = load_sample(next(it for it in source.items if it.key == "train_img_a"))
    assert (sample.boxes.tolist(), sample.labels) == ([], [])


def test_yolo_bad_line_and_unknown_class_name_file_and_line(tmp_path):
    root = write_yolo(tmp_path)
    (root / "labels" / "train" / "img_a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 oops 0.2\n")
    (root / "labels" / "train" / "img_b.txt").write_text("5 0.5 0.5 0.2 0.2\n")
    items = {it.key: it for it in open_source(root).items}
    with pytest.raises(SampleError, match=r"labels/train/img_a.txt line 2: expected 'class cx cy w h'"):
        load_sample(items["train_img_a"])
    with pytest.raises(SampleError, match=r"labels/train/img_b.txt line 1: unknown class 5; data.yaml names 2"):
        load_sample(items["train_img_b"])
