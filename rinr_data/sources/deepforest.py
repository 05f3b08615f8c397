"""DeepForest CSV: `image_path,xmin,ymin,xmax,ymax,label`, one row per box; an all-zero box marks an empty image."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from ..errors import SourceError
from .base import (
    Keys,
    Source,
    SourceItem,
    annotation_file,
    class_list,
    find_image,
    finite,
    inside_root,
    label_by_name,
    outside_root_error,
    read_annotation_text,
    relative,
)

CSV_COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


def _csv_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.csv"))


def is_csv_folder(path: Path) -> bool:
    """Whether the folder holds a *.csv file."""
    return bool(_csv_files(path))


def read_csv(path: Path, classes: Sequence[str] | None = None) -> Source:
    """DeepForest CSV `image_path,xmin,ymin,xmax,ymax,label`, one row per box; an all-zero box marks an empty image."""
    csv_file, root = annotation_file(Path(path), _csv_files, "*.csv annotation file")
    rel_csv = relative(csv_file, root)
    rows = csv.reader(read_annotation_text(csv_file).splitlines())
    header = [h.strip() for h in next(rows, [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise SourceError(f"{csv_file} line 1: missing column(s) {missing}; expected {','.join(CSV_COLUMNS)}")
    col = {c: header.index(c) for c in CSV_COLUMNS}
    wanted = class_list(classes)
    folders = [root, root / "images", csv_file.parent]
    keys = Keys()
    items: dict[str, SourceItem] = {}
    pending: list[tuple[SourceItem, str, list[float], str]] = []
    for ln, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{rel_csv} line {ln}"
        name = row[col["image_path"]].strip() if len(row) > col["image_path"] else ""
        if not name:
            bad = SourceItem(keys.make(f"{csv_file.stem}_line_{ln}"), rel_csv, csv_file)
            bad.error = f"{where}: empty image_path"
            items[f"\0{ln}"] = bad
            continue
        item = items.get(name)
        if item is None:
            if inside_root(name, root, csv_file.parent):
                item = SourceItem(keys.make(name), name, find_image(name, folders, root) or root / name)
            else:  # never looked up, so the message does not tell whether such a file exists
                item = SourceItem(keys.make(name), name, root / Path(name).name)
                item.error = outside_root_error(where, "image_path", name, root)
            items[name] = item
        if item.error:
            continue
        if len(row) != len(header):
            item.error = f"{where}: {len(row)} columns, the header has {len(header)}"
            continue
        vals = finite([row[col[c]] for c in ("xmin", "ymin", "xmax", "ymax")])
        if vals is None:
            item.error = f"{where}: xmin, ymin, xmax, ymax must be numbers, got {[row[col[c]] for c in col][1:5]}"
            continue
        if vals == [0.0, 0.0, 0.0, 0.0]:
            continue  # DeepForest marks images without objects by one all-zero row
        pending.append((item, row[col["label"]].strip(), vals, where))
    names = label_by_name(pending, wanted)
    for item in items.values():
        if item.error:  # a failed sample carries no boxes, so its partial boxes cannot leak anywhere
            item.boxes, item.labels, item.refs = [], [], []
    return Source(root, "csv", names, list(items.values()))
