"""Writers for tiny detection datasets in every input format rinr-encode reads (24x32 images, 1-3 boxes each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import smooth_frame
from PIL import Image

HEIGHT, WIDTH = 24, 32
CLASSES = ["cat", "dog"]
# name -> (boxes xyxy in pixels, labels as indices into CLASSES)
TRUTH: dict[str, tuple[list[list[float]], list[int]]] = {
    "img_a": ([[2, 3, 12, 14]], [0]),
    "img_b": ([[4, 4, 20, 18], [10.5, 2, 30, 10]], [1, 0]),
    "img_c": ([[0, 0, 8, 8], [16, 12, 32, 24], [5, 15, 14, 22]], [1, 1, 0]),
}
FAST = ["--max-steps", "10", "--pixels-per-step", "64", "--no-progress"]
# Subprocesses fit with one thread too, like the tests (see one_torch_thread), so their bytes match.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1"}


def write_images(folder: Path, names=None, suffix: str = ".png") -> dict[str, Path]:
    """Write one smooth test frame per name; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for seed, name in enumerate(names or TRUTH):
        path = folder / f"{name}{suffix}"
        Image.fromarray(smooth_frame(HEIGHT, WIDTH, seed)).save(path)
        paths[name] = path
    return paths


def write_coco(root: Path, truth=TRUTH) -> Path:
    """COCO: root/annotations.json (category ids 1, 2) + root/images/."""
    write_images(root / "images", truth)
    images, anns = [], []
    for i, (name, (boxes, labels)) in enumerate(truth.items(), start=1):
        images.append({"id": i, "file_name": f"{name}.png", "width": WIDTH, "height": HEIGHT})
        for (x0, y0, x1, y1), label in zip(boxes, labels):
            anns.append(
                {
                    "id": 100 + len(anns),
                    "image_id": i,
                    "category_id": label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def write_yolo(root: Path, truth=TRUTH, names_yaml: str | None = None) -> Path:
    """YOLO: root/images/train/*.png, root/labels/train/*.txt, root/data.yaml."""
    write_images(root / "images" / "train", truth)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    for name, (boxes, labels) in truth.items():
        lines = [
            f"{label} {(x0 + x1) / 2 / WIDTH} {(y0 + y1) / 2 / HEIGHT} {(x1 - x0) / WIDTH} {(y1 - y0) / HEIGHT}"
            for (x0, y0, x1, y1), label in zip(boxes, labels)
        ]
        (root / "labels" / "train" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(names_yaml or f"path: .\ntrain: images/train\nnames: {json.dumps(CLASSES)}\n")
    return root


def voc_xml(filename: str, objects: list[tuple[str, list[float]]]) -> str:
    """A Pascal VOC annotation."""
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{WIDTH}</width><height>{HEIGHT}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


def write_voc(root: Path, truth=TRUTH) -> Path:
    """VOC: root/*.xml next to root/*.png."""
    write_images(root, truth)
    for name, (boxes, labels) in truth.items():
        (root / f"{name}.xml").write_text(
            voc_xml(f"{name}.png", [(CLASSES[label], b) for b, label in zip(boxes, labels)])
        )
    return root


def write_csv(root: Path, truth=TRUTH) -> Path:
    """DeepForest CSV: root/annotations.csv + root/*.png."""
    write_images(root, truth)
    rows = ["image_path,xmin,ymin,xmax,ymax,label"]
    for name, (boxes, labels) in truth.items():
        rows += [f"{name}.png,{b[0]},{b[1]},{b[2]},{b[3]},{CLASSES[label]}" for b, label in zip(boxes, labels)]
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return root


def write_folder(root: Path, truth=TRUTH) -> Path:
    """A plain folder of images."""
    write_images(root, truth)
    return root


WRITERS = {"coco": write_coco, "yolo": write_yolo, "voc": write_voc, "csv": write_csv, "folder": write_folder}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny fits are dominated by thread hand-offs: one thread is many times faster on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
