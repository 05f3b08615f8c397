"""COCO detection JSON: one annotation file, bbox as [x, y, w, h] pixels, classes from 'categories'."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

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
    outside_root_error,
    read_annotation_text,
    relative,
)


def json_files(path: Path) -> list[Path]:
    """The *.json files in `path` and `path/annotations`, skipping hidden ones (macOS `._*` forks are not JSON)."""
    files = sorted(path.glob("*.json")) + sorted((path / "annotations").glob("*.json"))
    return [f for f in files if f.is_file() and not f.name.startswith(".")]


def load_json(path: Path) -> Any:
    """The parsed JSON document of a file; SourceError naming it, with line and column, if it is not JSON."""
    try:
        return json.loads(read_annotation_text(path))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc


def is_coco(data: Any) -> bool:
    """Whether a parsed JSON document has the keys of a COCO detection file ('images' list and 'annotations')."""
    return isinstance(data, dict) and isinstance(data.get("images"), list) and "annotations" in data


def coco_candidates(path: Path) -> list[Path]:
    """The *.json files in `path` or `path/annotations` that are COCO detection files; SourceError for one not JSON.

    Each file is parsed whole: a prefix can miss keys written after a long 'images' list, and a truncated file
    must fail, not pass for a folder of unannotated images. A big file is thus parsed twice (here and by
    `read_coco`); that costs seconds once per conversion and keeps no document alive in between.
    """
    return [f for f in json_files(path) if is_coco(load_json(f))]


def is_coco_folder(path: Path) -> bool:
    """Whether the folder holds a COCO annotation file."""
    return bool(coco_candidates(path))


def read_coco(path: Path, classes: Sequence[str] | None = None) -> Source:
    """COCO detection JSON (bbox = x, y, w, h); images next to it, in images/ or as file_name says."""
    what = "COCO annotation file (*.json or annotations/*.json with 'images' and 'annotations')"
    ann_file, root = annotation_file(Path(path), coco_candidates, what)
    data = load_json(ann_file)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise SourceError(f"{ann_file}: not a COCO detection file (no 'images' list)")
    anns = data.get("annotations", [])
    cats = data.get("categories", [])
    if not isinstance(anns, list) or not isinstance(cats, list):
        raise SourceError(f"{ann_file}: 'annotations' and 'categories' must be lists")
    try:
        cat_ids = sorted({int(c["id"]) for c in cats})
        cat_names = {int(c["id"]): str(c.get("name", c["id"])) for c in cats}
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"{ann_file}: malformed category entry ({exc!r})") from exc
    names = [cat_names[i] for i in cat_ids]
    wanted = class_list(classes)
    if wanted is not None:
        label_of = {i: wanted.index(cat_names[i]) for i in cat_ids if cat_names[i] in wanted}
        names = wanted
    else:
        label_of = {cid: k for k, cid in enumerate(cat_ids)}

    rel_ann = relative(ann_file, root)
    folders = [root / "images", root, ann_file.parent, ann_file.parent / "images"]
    keys, items, by_id, warnings = Keys(), [], {}, []
    for n, im in enumerate(data["images"]):
        try:
            image_id, file_name = im["id"], str(im["file_name"])
        except (KeyError, TypeError) as exc:
            raise SourceError(f"{ann_file}: images[{n}] lacks {exc}") from exc
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise SourceError(f"{ann_file}: images[{n}] id {image_id!r} is not an integer or a string")
        error = None
        if inside_root(file_name, root, ann_file.parent):
            image_path = find_image(file_name, folders, root) or folders[0] / file_name
        else:  # never looked up, so the message does not tell whether such a file exists
            error = outside_root_error(f"{rel_ann} images[{n}]", "file_name", file_name, root)
            image_path = folders[0] / Path(file_name).name
        declared = None
        if isinstance(im.get("width"), int) and isinstance(im.get("height"), int):
            declared = (im["width"], im["height"])
        item = SourceItem(keys.make(file_name), file_name, image_path, declared_size=declared, error=error)
        if image_id in by_id:
            raise SourceError(f"{ann_file}: image id {image_id} appears twice")
        by_id[image_id] = item
        items.append(item)
    for n, a in enumerate(anns):
        aid = a.get("id", f"#{n}") if isinstance(a, dict) else f"#{n}"
        where = f"{rel_ann} annotation id {aid}"
        ref = a.get("image_id") if isinstance(a, dict) else None
        item = by_id.get(ref) if isinstance(ref, (int, str)) else None
        if item is None:
            image_id = a.get("image_id") if isinstance(a, dict) else None
            warnings.append(f"{where}: image_id {image_id!r} matches no image; ignored")
            continue
        if item.error:
            continue
        bbox = a.get("bbox")
        xywh = finite(bbox) if isinstance(bbox, (list, tuple)) and len(bbox) == 4 else None
        if xywh is None:
            item.error = f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}"
            continue
        cid = a.get("category_id")
        if not isinstance(cid, int) or cid not in cat_names:
            item.error = f"{where}: unknown class: category_id {cid!r} is not in 'categories' {cat_ids}"
            continue
        if cid not in label_of:
            item.error = f"{where}: unknown class {cat_names[cid]!r}; known classes: {names}"
            continue
        x, y, w, h = xywh
        item.boxes.append((x, y, x + w, y + h))
        item.labels.append(label_of[cid])
        item.refs.append(where)
    return Source(root, "coco", names, items, warnings)
