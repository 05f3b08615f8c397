"""Dataset readers against hostile input (issue 22): big or truncated COCO files, high-bit-depth and EXIF-rotated
images, annotation paths that leave the dataset root, VOC files that are not annotations, orphan YOLO labels."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_datasets import TRUTH, voc_xml, write_coco, write_csv, write_images, write_voc, write_yolo

from rinr_data.sources import SampleError, SourceError, SourceItem, detect_format, load_sample, open_source
from rinr_data.sources.base import inside_root

# ---------------------------------------------------------------------------------------------- format detection


def test_coco_file_larger_than_a_mebibyte_is_detected_as_coco(tmp_path):
    root = write_coco(tmp_path)
    data = json.loads((root / "annotations.json").read_text())
    # Image entries without annotations push "annotations" far past the first MiB (json.dumps keeps key order).
    data["images"] += [{"id": 1000 + i, "file_name": f"unlabelled/frame_{i:06d}.png"} for i in range(30000)]
    (root / "annotations.json").write_text(json.dumps(data))
    assert (root / "annotations.json").stat().st_size > 1 << 20
    assert detect_format(root) == "coco"
    source = open_source(root)
    assert source.format == "coco" and len(source.items) == 30003
    sample = load_sample(source.items[1])
    assert sample.boxes.tolist() == TRUTH["img_b"][0] and sample.labels == TRUTH["img_b"][1]


def test_truncated_coco_file_is_an_error_naming_it(tmp_path):
    root = write_coco(tmp_path)
    text = (root / "annotations.json").read_text()
    (root / "annotations.json").write_text(text[: text.index('"annotations"') // 2])  # cut inside "images"
    for fmt in ("auto", "coco"):
        with pytest.raises(SourceError, match=r"annotations.json: malformed JSON at line 1") as info:
            open_source(root, fmt)
        assert str(root / "annotations.json") in str(info.value)


def test_json_without_coco_keys_is_an_error_not_a_plain_image_folder(tmp_path):
    write_images(tmp_path / "images")
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [], "labels": {}}))
    with pytest.raises(SourceError, match=r"annotations.json: not a COCO detection file.*--format folder"):
        open_source(tmp_path)
    assert open_source(tmp_path, "folder").format == "folder"  # asked for explicitly, the JSON is ignored


def test_hidden_json_files_are_not_annotation_files(tmp_path):
    root = write_coco(tmp_path)
    (root / "._annotations.json").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    assert detect_format(root) == "coco" and len(open_source(root).items) == 3


def test_voc_folder_with_a_stray_json_stays_voc(tmp_path):
    root = write_voc(tmp_path)
    (root / "meta.json").write_text(json.dumps({"annotator": "me"}))
    assert detect_format(root) == "voc"


# ---------------------------------------------------------------------------------------------- pixel formats


def png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB): gray for HxW, RGB for HxWx3."""
    height, width = values.shape[:2]
    color_type = 2 if values.ndim == 3 else 0
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def only_image(folder: Path) -> np.ndarray:
    (item,) = open_source(folder, "folder").items
    return load_sample(item).image


def test_16_bit_gray_png_keeps_its_gradient(tmp_path):
    values = (np.arange(16 * 256).reshape(16, 256) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(values).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode.startswith("I")
    image = only_image(tmp_path)
    assert image.dtype == np.uint8 and image.shape == (16, 256, 3)
    np.testing.assert_array_equal(image, np.repeat((values >> 8)[..., None], 3, axis=2))


def test_16_bit_rgb_png_keeps_its_values(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, size=(8, 12, 3), dtype=np.uint16)
    png16(tmp_path / "c.png", values)
    np.testing.assert_array_equal(only_image(tmp_path), values >> 8)


def test_16_bit_pgm_keeps_its_gradient(tmp_path):  # Pillow opens it as mode I (32-bit) scaled to 0..65535
    values = (np.arange(4 * 64).reshape(4, 64) * 256).astype(np.uint16)
    (tmp_path / "g.pgm").write_bytes(b"P5\n64 4\n65535\n" + values.astype(">u2").tobytes())
    image = load_sample(SourceItem("g", "g.pgm", tmp_path / "g.pgm")).image
    np.testing.assert_array_equal(image[..., 0], values >> 8)


def test_float_tiff_with_a_declared_range_is_scaled(tmp_path):
    values = np.linspace(-1.0, 1.0, 4 * 64, dtype=np.float32).reshape(4, 64)
    Image.fromarray(values).save(tmp_path / "f.tif", tiffinfo={340: -1.0, 341: 1.0})
    image = only_image(tmp_path)
    np.testing.assert_array_equal(image[..., 0], np.rint((values + 1) / 2 * 255).astype(np.uint8))


@pytest.mark.parametrize("dtype,mode", [(np.float32, "F"), (np.int32, "I")])
def test_float_and_32_bit_images_without_a_range_are_refused(tmp_path, dtype, mode):
    Image.fromarray((np.arange(64).reshape(4, 16) * 1000).astype(dtype)).save(tmp_path / "x.tif")
    assert Image.open(tmp_path / "x.tif").mode == mode
    (item,) = open_source(tmp_path).items
    with pytest.raises(SampleError, match=rf"x.tif: .*mode {mode}.*no declared value range"):
        load_sample(item)


def test_exif_orientation_is_applied_and_boxes_refer_to_the_displayed_image(tmp_path):
    stored = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high as stored; top-left quadrant red
    stored[:8, :16] = (255, 0, 0)
    pil = Image.fromarray(stored)
    exif = pil.getexif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 16 wide, 32 high
    (tmp_path / "images").mkdir()
    pil.save(tmp_path / "images" / "r.jpg", exif=exif, quality=95)
    coco = {
        "images": [{"id": 1, "file_name": "r.jpg", "width": 16, "height": 32}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 0, 8, 16]}],  # the red part, displayed
        "categories": [{"id": 1, "name": "red"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    sample = load_sample(open_source(tmp_path).items[0])
    assert sample.image.shape == (32, 16, 3) and sample.warnings == []
    assert sample.boxes.tolist() == [[8, 0, 16, 16]]
    x0, y0, x1, y1 = map(int, sample.boxes[0])
    red = sample.image[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].astype(int)
    assert (red[..., 0] > 200).all() and (red[..., 1:] < 60).all()


# ---------------------------------------------------------------------------------------------- paths outside the root


@pytest.mark.parametrize(
    "name,base,inside",
    [
        ("a.png", None, True),
        ("sub/../a.png", None, True),
        ("../images/a.png", "annotations", True),
        ("../a.png", None, False),
        ("../../a.png", "annotations", False),
        ("/etc/passwd", None, False),
    ],
)
@pytest.mark.parametrize("root", [".", "data"])
def test_inside_root_collapses_dots_even_for_a_relative_root(tmp_path, monkeypatch, root, name, base, inside):
    monkeypatch.chdir(tmp_path)
    assert inside_root(name, Path(root), None if base is None else Path(root) / base) is inside


@pytest.mark.parametrize("name", ["../../etc/x.png", "/etc/x.png", "sub/../../x.png"])
def test_voc_filename_outside_the_root_is_refused(tmp_path, name):
    root = write_voc(tmp_path / "voc")
    (tmp_path / "x.png").write_bytes((root / "img_b.png").read_bytes())
    (root / "img_a.xml").write_text(voc_xml(name, [("cat", [1, 1, 5, 5])]))
    items = {it.key: it for it in open_source(root).items}
    with pytest.raises(SampleError, match=r"img_a.xml: <filename> .* points outside the dataset root"):
        load_sample(items["img_a"])
    assert load_sample(items["img_b"]).boxes.shape == (2, 4)


def test_voc_xml_that_is_not_an_annotation_is_refused(tmp_path):
    root = write_voc(tmp_path)
    (root / "img_a.xml").write_text("<annotations><image name='img_a.png'/></annotations>")
    items = {it.key: it for it in open_source(root).items}
    with pytest.raises(SampleError, match=r"img_a.xml: root element is <annotations>, not <annotation>"):
        load_sample(items["img_a"])


@pytest.mark.parametrize("name", ["../x.png", "/etc/x.png", "images/../../x.png"])
def test_coco_file_name_outside_the_root_is_refused(tmp_path, name):
    root = write_coco(tmp_path / "coco")
    (tmp_path / "x.png").write_bytes((root / "images" / "img_b.png").read_bytes())
    data = json.loads((root / "annotations.json").read_text())
    data["images"][0]["file_name"] = name
    (root / "annotations.json").write_text(json.dumps(data))
    items = open_source(root).items
    with pytest.raises(
        SampleError, match=r"annotations.json images\[0\]: file_name .* points outside the dataset root"
    ):
        load_sample(items[0])
    assert load_sample(items[1]).boxes.shape == (2, 4)


def test_coco_file_name_climbing_out_of_annotations_folder_but_inside_the_root_is_fine(tmp_path):
    root = write_coco(tmp_path)
    data = json.loads((root / "annotations.json").read_text())
    for im in data["images"]:
        im["file_name"] = "../images/" + im["file_name"]
    (root / "annotations").mkdir()
    (root / "annotations" / "instances.json").write_text(json.dumps(data))
    (root / "annotations.json").unlink()
    source = open_source(root)
    assert source.format == "coco"
    assert load_sample(source.items[0]).boxes.tolist() == TRUTH["img_a"][0]


@pytest.mark.parametrize("name", ["../x.png", "/etc/x.png"])
def test_csv_image_path_outside_the_root_is_refused(tmp_path, name):
    root = write_csv(tmp_path / "csv")
    (tmp_path / "x.png").write_bytes((root / "img_b.png").read_bytes())
    with (root / "annotations.csv").open("a") as f:
        f.write(f"{name},1,1,5,5,cat\n")
    items = {it.source: it for it in open_source(root).items}
    with pytest.raises(SampleError, match=r"annotations.csv line 8: image_path .* points outside the dataset root"):
        load_sample(items[name])
    assert load_sample(items["img_b.png"]).boxes.shape == (2, 4)


# ---------------------------------------------------------------------------------------------- YOLO


def test_yolo_label_file_without_an_image_is_reported(tmp_path):
    root = write_yolo(tmp_path)
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "classes.txt").write_text("cat\ndog\n")  # labelImg's class list, not a label file
    source = open_source(root)
    assert len(source.items) == 3
    orphans = [w for w in source.warnings if "no image" in w]
    assert len(orphans) == 1 and "labels/train/ghost.txt" in orphans[0]
