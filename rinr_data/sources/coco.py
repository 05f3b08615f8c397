"""COCO detection JSON: one annotation file, bbox as [x, y, w, h] pixels, classes from 'categories'."""

from __future__ import annotations

import json
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
    read_annotation_text,
    relative,
)


def coco_candidates(path: Path) -> list[Path]:
    """The *.json files in `path` or `path/annotations` that look like COCO detection files."""
    files = sorted(path.glob("*.json")) + sorted((path / "annotations").glob("*.json"))
    found = []
    for f in files:
        try:
            head = f.read_text(errors="replace")[: 1 << 20]
        except OSError:
            continue
        if '"images"' in head and '"annotations"' in head:
            found.append(f)
    return found


def is_coco_folder(path: Path) -> bool:
    """Whether the folder holds a COCO annotation file."""
    return bool(coco_candidates(path))


def read_coco(path: Path, classes: Sequence[str] | None = None) -> Source:
    """COCO detection JSON (bbox = x, y, w, h); images next to it, in images/ or as file_name says."""
    what = "COCO annotation file (*.json or annotations/*.json with 'images' and 'annotations')"
    ann_file, root = annotation_file(Path(path), coco_candidates, what)
    text = read_annotation_text(ann_file)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{ann_file}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
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
        found = find_image(file_name, folders)
        image_path = found or folders[0] / file_name
        declared = None
        if isinstance(im.get("width"), int) and isinstance(im.get("height"), int):
            declared = (im["width"], im["height"])
        item = SourceItem(keys.make(file_name), file_name, image_path, declared_size=declared)
        if image_id in by_id:
            raise SourceError(f"{ann_file}: image id {image_id} appears twice")
        by_id[image_id] = item
        items.append(item)
    for n, a in enumerate(anns):
        aid = a.get("id", f"#{n}") if isinstance(a, dict) else f"#{n}"
        where = f"{rel_ann} annotation id {aid}"
        item = by_id.get(a.get("image_id")) if isinstance(a, dict) else None
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
