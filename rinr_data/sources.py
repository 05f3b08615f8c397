"""Dataset readers: COCO, YOLO, Pascal VOC, DeepForest CSV and plain image folders, scanned into ordered samples.

Scanning reads every annotation file up front (cheap) so the sample order, the class list and the keys are
fixed before any image is touched: shard i of a conversion always holds the same samples. Problems that belong
to one sample (a bad label line, an unknown class, a malformed per-image XML) are recorded on that sample and
raised when it is loaded, so `--on-error skip` can drop it; problems that make the whole dataset unreadable (a
COCO file that is not JSON, a CSV without the needed columns) raise `SourceError` at once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .frames import clip_boxes

FORMATS = ("coco", "yolo", "voc", "csv", "folder")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".avif")
CSV_COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


class SourceError(ValueError):
    """A dataset cannot be read at all; the message names the file (and line where known)."""


class SampleError(ValueError):
    """One sample cannot be converted; the message names its file (and line or annotation id)."""


@dataclass
class SourceItem:
    """One image of a dataset and its boxes as annotated, before the image is read.

    `boxes` are xyxy pixels, or normalised (0..1) xyxy when `normalized` (YOLO: the image size is needed first).
    `refs` says where each box came from, for messages. `error` holds an annotation problem found while
    scanning; loading the sample raises it.
    """

    key: str
    source: str
    image_path: Path
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    normalized: bool = False
    declared_size: tuple[int, int] | None = None  # (width, height) the annotation claims
    error: str | None = None


@dataclass
class Source:
    """A scanned dataset: its root, format, class names (label i is classes[i]) and samples in a fixed order."""

    root: Path
    format: str
    classes: list[str]
    items: list[SourceItem]
    warnings: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """sha256 over classes, keys, sources, boxes and labels: changes when the scanned dataset changes."""
        h = hashlib.sha256()
        h.update(json.dumps(self.classes).encode())
        for it in self.items:
            h.update(json.dumps([it.key, it.source, it.boxes, it.labels, it.error]).encode())
        return h.hexdigest()


@dataclass
class LoadedSample:
    """A sample ready to encode: HxWx3 uint8 image, clipped (and resized) xyxy boxes, labels, warnings."""

    item: SourceItem
    image: np.ndarray
    boxes: np.ndarray
    labels: list[int]
    warnings: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        """Rows of the (resized) image."""
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        """Columns of the (resized) image."""
        return int(self.image.shape[1])


# ---------------------------------------------------------------------------------------------- keys and files


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_image(p) and not _hidden(p.relative_to(folder)))


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


class _Keys:
    """Turns relative paths into unique shard keys: no dots (webdataset splits the key at the first dot)."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def make(self, rel: str) -> str:
        stem = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "sample"
        key, n = base, 1
        while key in self.used:
            n += 1
            key = f"{base}-{n}"
        self.used.add(key)
        return key


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _find_image(name: str, folders: Sequence[Path], stem_fallback: bool = False) -> Path | None:
    """First existing `folder/name`; with stem_fallback also `folder/<stem>.<any image suffix>`."""
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    if stem_fallback:
        stem = Path(name).stem
        for folder in folders:
            for suffix in IMAGE_SUFFIXES:
                for cand in (folder / (stem + suffix), folder / (stem + suffix.upper())):
                    if cand.is_file():
                        return cand
    return None


def _finite(values: Sequence[Any]) -> list[float] | None:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _class_list(classes: Sequence[str] | None) -> list[str] | None:
    if classes is None:
        return None
    names = [str(c).strip() for c in classes]
    if len(set(names)) != len(names) or not all(names):
        raise SourceError(f"class names must be unique and non-empty, got {names}")
    return names


# ---------------------------------------------------------------------------------------------- format detection


def _coco_candidates(path: Path) -> list[Path]:
    files = sorted(path.glob("*.json")) + sorted((path / "annotations").glob("*.json"))
    found = []
    for f in files:
        try:
            head = f.read_text(errors="replace")[:1 << 20]
        except OSError:
            continue
        if '"images"' in head and '"annotations"' in head:
            found.append(f)
    return found


def detect_format(path: str | Path) -> str:
    """Guess the dataset format of a file or folder; raise SourceError listing what was looked for."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return "coco"
        if suffix == ".csv":
            return "csv"
        if suffix in (".yaml", ".yml"):
            return "yolo"
        raise SourceError(f"{path}: cannot tell the format of a {suffix or 'suffix-less'} file; "
                          "pass a folder, a COCO .json, a .csv or a YOLO data.yaml, or set --format")
    if any((path / n).is_file() for n in ("data.yaml", "data.yml", "dataset.yaml")) or (
            (path / "labels").is_dir() and (path / "images").is_dir()):
        return "yolo"
    if _coco_candidates(path):
        return "coco"
    if any(path.glob("*.xml")) or any((path / "Annotations").glob("*.xml")):
        return "voc"
    if any(path.glob("*.csv")):
        return "csv"
    if _images_under(path):
        return "folder"
    raise SourceError(f"{path}: no dataset found (looked for data.yaml or images/+labels/ (YOLO), a COCO *.json, "
                      "*.xml (VOC), *.csv and image files); set --format")


def open_source(path: str | Path, format: str = "auto", classes: Sequence[str] | None = None) -> Source:
    """Scan a dataset (format "auto" detects it); `classes` fixes the class list where the format has none."""
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    readers = {"coco": read_coco, "yolo": read_yolo, "voc": read_voc, "csv": read_csv, "folder": read_folder}
    if fmt not in readers:
        raise ValueError(f"unknown dataset format {format!r}; valid formats: auto, {', '.join(FORMATS)}")
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    return readers[fmt](path, classes=classes)


# ---------------------------------------------------------------------------------------------- COCO


def read_coco(path: Path, classes: Sequence[str] | None = None) -> Source:
    """COCO detection JSON (bbox = x, y, w, h); images next to it, in images/ or as file_name says."""
    path = Path(path)
    if path.is_dir():
        cands = _coco_candidates(path)
        if len(cands) != 1:
            raise SourceError(f"{path}: expected one COCO annotation file (*.json or annotations/*.json with "
                              f"'images' and 'annotations'), found {len(cands)}: {[c.name for c in cands]}")
        ann_file, root = cands[0], path
    else:
        ann_file, root = path, path.parent
    try:
        data = json.loads(ann_file.read_text())
    except json.JSONDecodeError as exc:
        raise SourceError(f"{ann_file}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{ann_file}: cannot read: {exc}") from exc
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
    wanted = _class_list(classes)
    if wanted is not None:
        label_of = {i: wanted.index(cat_names[i]) for i in cat_ids if cat_names[i] in wanted}
        names = wanted
    else:
        label_of = {cid: k for k, cid in enumerate(cat_ids)}

    rel_ann = _rel(ann_file, root)
    folders = [root / "images", root, ann_file.parent, ann_file.parent / "images"]
    keys, items, by_id, warnings = _Keys(), [], {}, []
    for n, im in enumerate(data["images"]):
        try:
            image_id, file_name = im["id"], str(im["file_name"])
        except (KeyError, TypeError) as exc:
            raise SourceError(f"{ann_file}: images[{n}] lacks {exc}") from exc
        found = _find_image(file_name, folders)
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
            warnings.append(f"{where}: image_id {a.get('image_id') if isinstance(a, dict) else None!r} "
                            "matches no image; ignored")
            continue
        if item.error:
            continue
        bbox = a.get("bbox")
        xywh = _finite(bbox) if isinstance(bbox, (list, tuple)) and len(bbox) == 4 else None
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


# ---------------------------------------------------------------------------------------------- YOLO


def parse_names_yaml(text: str, where: str = "data.yaml") -> list[str] | None:
    """The `names:` of a YOLO data.yaml (list, flow list or index: name mapping) with a minimal parser."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^names\s*:\s*(.*?)\s*$", line)
        if not m:
            continue
        rest = re.sub(r"\s+#.*$", "", m.group(1))
        if rest.startswith("["):
            inner = rest.strip("[]")
            return [_yaml_scalar(v) for v in inner.split(",") if v.strip()]
        if rest.startswith("{"):
            pairs = [p.split(":", 1) for p in rest.strip("{}").split(",") if p.strip()]
            return _names_from_mapping({k.strip(): _yaml_scalar(v) for k, v in pairs}, where)
        if rest:
            raise SourceError(f"{where} line {i + 1}: cannot read names: {rest!r}")
        entries, mapping = [], {}
        for j in range(i + 1, len(lines)):
            sub = lines[j]
            if not sub.strip() or sub.lstrip().startswith("#"):
                continue
            if not sub[0].isspace():
                break
            body = re.sub(r"\s+#.*$", "", sub.strip())
            if body.startswith("- "):
                entries.append(_yaml_scalar(body[2:]))
            elif ":" in body:
                k, v = body.split(":", 1)
                mapping[k.strip()] = _yaml_scalar(v)
            else:
                raise SourceError(f"{where} line {j + 1}: cannot read a class name from {sub.strip()!r}")
        return entries if entries else _names_from_mapping(mapping, where)
    return None


def _yaml_scalar(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _names_from_mapping(mapping: dict[Any, Any], where: str) -> list[str]:
    try:
        idx = {int(k): str(v) for k, v in mapping.items()}
    except (TypeError, ValueError) as exc:
        raise SourceError(f"{where}: names mapping keys must be class indices: {exc}") from exc
    if sorted(idx) != list(range(len(idx))):
        raise SourceError(f"{where}: names mapping must cover indices 0..{len(idx) - 1}, got {sorted(idx)}")
    return [idx[i] for i in range(len(idx))]


def _yolo_names(root: Path) -> tuple[list[str] | None, str | None]:
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        f = root / name
        if not f.is_file():
            continue
        text = f.read_text()
        try:
            import yaml  # optional: PyYAML handles every YAML spelling, the fallback the common ones
        except ImportError:
            return parse_names_yaml(text, f.name), f.name
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SourceError(f"{f}: malformed YAML: {exc}") from exc
        names = doc.get("names") if isinstance(doc, dict) else None
        if isinstance(names, dict):
            return _names_from_mapping(names, f.name), f.name
        if isinstance(names, list):
            return [str(n) for n in names], f.name
        if names is not None:
            raise SourceError(f"{f}: 'names' must be a list or an index: name mapping")
        return None, f.name
    if (root / "classes.txt").is_file():
        return [ln.strip() for ln in (root / "classes.txt").read_text().splitlines() if ln.strip()], "classes.txt"
    return None, None


def read_yolo(path: Path, classes: Sequence[str] | None = None) -> Source:
    """YOLO: images/ (any depth), labels/ mirroring it with `class cx cy w h` (normalised) lines, data.yaml names."""
    path = Path(path)
    root = path.parent if path.is_file() else path
    names, names_file = _yolo_names(root)
    wanted = _class_list(classes)
    if wanted is not None:
        names, names_file = wanted, "--classes"
    image_dir = root / "images" if (root / "images").is_dir() else root
    label_dir = root / "labels"
    keys, items = _Keys(), []
    max_class = -1
    for img in _images_under(image_dir):
        if image_dir == root and img.is_relative_to(label_dir):
            continue
        rel = img.relative_to(image_dir)
        item = SourceItem(keys.make(rel.as_posix()), _rel(img, root), img, normalized=True)
        items.append(item)
        label_file = (label_dir / rel).with_suffix(".txt")
        if not label_file.is_file():
            continue  # YOLO convention: an image without a label file has no objects
        rel_label = _rel(label_file, root)
        try:
            lines = label_file.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            item.error = f"{rel_label}: cannot read: {exc}"
            continue
        for ln, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parts = line.split()
            where = f"{rel_label} line {ln}"
            vals = _finite(parts[1:]) if len(parts) == 5 else None
            if vals is None or not re.fullmatch(r"\d+", parts[0]):
                item.error = f"{where}: expected 'class cx cy w h' (integer class, 4 finite numbers), got {line!r}"
                break
            cls = int(parts[0])
            if names is not None and cls >= len(names):
                item.error = (f"{where}: unknown class {cls}; {names_file} names {len(names)} classes "
                              f"(0..{len(names) - 1})")
                break
            max_class = max(max_class, cls)
            cx, cy, w, h = vals
            item.boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            item.labels.append(cls)
            item.refs.append(where)
    warnings = []
    if names is None:
        names = [str(i) for i in range(max_class + 1)]
        warnings.append(f"{root}: no data.yaml or classes.txt with class names; using indices as names")
    return Source(root, "yolo", names, items, warnings)


# ---------------------------------------------------------------------------------------------- Pascal VOC


def read_voc(path: Path, classes: Sequence[str] | None = None) -> Source:
    """Pascal VOC: one XML per image (in the folder or Annotations/), images beside it, in JPEGImages/ or images/."""
    path = Path(path)
    xml_dir = path / "Annotations" if (path / "Annotations").is_dir() else path
    folders = [xml_dir, path, path / "JPEGImages", path / "images"]
    wanted = _class_list(classes)
    keys, items, parsed = _Keys(), [], []
    for xml_file in sorted(xml_dir.glob("*.xml")):
        rel_xml = _rel(xml_file, path)
        objects: list[tuple[str, list[float] | None, str]] = []
        error, filename, declared = None, None, None
        try:
            tree = ET.parse(xml_file)
            root_el = tree.getroot()
            filename = (root_el.findtext("filename") or "").strip() or None
            w, h = root_el.findtext("size/width"), root_el.findtext("size/height")
            if w and h and w.strip().isdigit() and h.strip().isdigit():
                declared = (int(w), int(h))
            for k, obj in enumerate(root_el.iter("object"), start=1):
                name = (obj.findtext("name") or "").strip()
                bb = obj.find("bndbox")
                vals = None
                if bb is not None:
                    vals = _finite([bb.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")])
                where = f"{rel_xml} object {k}"
                if not name:
                    error = error or f"{where}: no <name>"
                elif vals is None:
                    error = error or f"{where}: <bndbox> needs numeric xmin, ymin, xmax, ymax"
                objects.append((name, vals, where))
        except ET.ParseError as exc:
            error = f"{rel_xml}: malformed XML at line {exc.position[0]}: {exc}"
        except OSError as exc:
            error = f"{rel_xml}: cannot read: {exc}"
        image = _find_image(filename, folders, stem_fallback=True) if filename else None
        # DeepForest-style exports name a .tif in the XML next to a .png: fall back to the XML's own stem.
        image = image or _find_image(xml_file.stem + ".png", folders, stem_fallback=True)
        image = image or xml_dir / (filename or xml_file.stem)
        item = SourceItem(keys.make(xml_file.stem), _rel(image, path), image, declared_size=declared, error=error)
        items.append(item)
        parsed.append(objects)
    if wanted is None:
        names = sorted({name for objs, it in zip(parsed, items) if not it.error for name, _, _ in objs})
    else:
        names = wanted
    for item, objs in zip(items, parsed):
        if item.error:
            continue
        for name, vals, where in objs:
            if name not in names:
                item.error = f"{where}: unknown class {name!r}; known classes: {names}"
                break
            item.boxes.append(tuple(vals))  # type: ignore[arg-type]
            item.labels.append(names.index(name))
            item.refs.append(where)
    return Source(path, "voc", names, items)


# ---------------------------------------------------------------------------------------------- CSV


def read_csv(path: Path, classes: Sequence[str] | None = None) -> Source:
    """DeepForest CSV `image_path,xmin,ymin,xmax,ymax,label`, one row per box; an all-zero box marks an empty image."""
    path = Path(path)
    if path.is_dir():
        cands = sorted(path.glob("*.csv"))
        if len(cands) != 1:
            raise SourceError(f"{path}: expected one *.csv annotation file, found {len(cands)}: "
                              f"{[c.name for c in cands]}")
        csv_file, root = cands[0], path
    else:
        csv_file, root = path, path.parent
    rel_csv = _rel(csv_file, root)
    try:
        text = csv_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{csv_file}: cannot read: {exc}") from exc
    rows = csv.reader(text.splitlines())
    header = [h.strip() for h in next(rows, [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise SourceError(f"{csv_file} line 1: missing column(s) {missing}; expected {','.join(CSV_COLUMNS)}")
    col = {c: header.index(c) for c in CSV_COLUMNS}
    wanted = _class_list(classes)
    folders = [root, root / "images", csv_file.parent]
    keys = _Keys()
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
            image = _find_image(name, folders) or root / name
            item = items[name] = SourceItem(keys.make(name), name, image)
        if item.error:
            continue
        if len(row) != len(header):
            item.error = f"{where}: {len(row)} columns, the header has {len(header)}"
            continue
        vals = _finite([row[col[c]] for c in ("xmin", "ymin", "xmax", "ymax")])
        if vals is None:
            item.error = f"{where}: xmin, ymin, xmax, ymax must be numbers, got {[row[col[c]] for c in col][1:5]}"
            continue
        label = row[col["label"]].strip()
        if vals == [0.0, 0.0, 0.0, 0.0]:
            continue  # DeepForest marks images without objects by one all-zero row
        pending.append((item, label, vals, where))
    names = wanted if wanted is not None else sorted({label for it, label, _, _ in pending if not it.error})
    for item, label, vals, where in pending:
        if item.error:
            continue
        if label not in names:
            item.error = f"{where}: unknown class {label!r}; known classes: {names}"
            continue
        item.boxes.append(tuple(vals))  # type: ignore[arg-type]
        item.labels.append(names.index(label))
        item.refs.append(where)
    for item in items.values():
        if item.error:  # a failed sample carries no boxes, so its partial boxes cannot leak anywhere
            item.boxes, item.labels, item.refs = [], [], []
    return Source(root, "csv", names, list(items.values()))


# ---------------------------------------------------------------------------------------------- plain folder


def read_folder(path: Path, classes: Sequence[str] | None = None) -> Source:
    """Every image under the folder (sorted by path), without boxes."""
    path = Path(path)
    keys = _Keys()
    items = [SourceItem(keys.make(_rel(p, path)), _rel(p, path), p) for p in _images_under(path)]
    return Source(path, "folder", _class_list(classes) or [], items)


# ---------------------------------------------------------------------------------------------- loading


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"size must look like WxH with positive integers, e.g. 384x288, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def target_size(width: int, height: int, size: tuple[int, int] | None = None,
                max_side: int | None = None) -> tuple[int, int]:
    """(width, height) after resizing: exactly `size`, or scaled down so the longer side is at most max_side."""
    if size is not None:
        return size
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


def load_sample(item: SourceItem, size: tuple[int, int] | None = None, max_side: int | None = None) -> LoadedSample:
    """Read the image, validate and clip its boxes, resize both; raise SampleError naming the file."""
    from PIL import Image, UnidentifiedImageError

    if item.error:
        raise SampleError(item.error)
    try:
        with Image.open(item.image_path) as pil:
            pil.load()
            rgb = pil.convert("RGB")
    except FileNotFoundError as exc:
        raise SampleError(f"{item.source}: image not found ({item.image_path})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise SampleError(f"{item.source}: cannot read image {item.image_path}: {exc}") from exc
    width, height = rgb.size
    notes = []
    if item.declared_size is not None and item.declared_size != (width, height):
        notes.append(f"{item.source}: annotation says {item.declared_size[0]}x{item.declared_size[1]}, "
                     f"image is {width}x{height}; boxes used as annotated")
    boxes = np.asarray(item.boxes, dtype=np.float64).reshape(-1, 4)
    if item.normalized:
        boxes = boxes * np.array([width, height, width, height], dtype=np.float64)
    for i, box in enumerate(boxes):
        try:
            clip_boxes(box[None], height, width, warn=False)
        except ValueError as exc:
            msg = str(exc).split(": ", 1)[0].replace("box 0 ", "box ")
            raise SampleError(f"{item.refs[i]}: {msg}: {[round(v, 3) for v in box.tolist()]}") from exc
    clipped = clip_boxes(boxes, height, width, warn=False)
    for i in np.flatnonzero((clipped != boxes).any(axis=1)):
        notes.append(f"{item.refs[i]}: box {[round(v, 3) for v in boxes[i].tolist()]} extends outside the "
                     f"{width}x{height} image; clipped")
    new_w, new_h = target_size(width, height, size, max_side)
    if (new_w, new_h) != (width, height):
        rgb = rgb.resize((new_w, new_h), Image.Resampling.LANCZOS)
        clipped = clipped * np.array([new_w / width, new_h / height, new_w / width, new_h / height])
    return LoadedSample(item, np.asarray(rgb, dtype=np.uint8).copy(), clipped, list(item.labels), notes)
