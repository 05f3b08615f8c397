"""Pascal VOC reader: malformed XML, unknown classes, images found by stem."""

from __future__ import annotations

import pytest
from tiny_datasets import voc_xml, write_voc

from rinr_data.sources import SampleError, load_sample, open_source


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
