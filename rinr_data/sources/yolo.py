"""YOLO: images/ with a mirrored labels/ tree of `class cx cy w h` lines, class names from data.yaml or classes.txt."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import SourceError
from .base import Keys, Source, SourceItem, class_list, finite, images_under, read_annotation_text, relative

NAMES_FILES = ("data.yaml", "data.yml", "dataset.yaml")


def is_yolo_folder(path: Path) -> bool:
    """Whether the folder holds a data.yaml, or images/ next to labels/."""
    return any((path / n).is_file() for n in NAMES_FILES) or ((path / "labels").is_dir() and (path / "images").is_dir())


def class_names_from_yaml(text: str, where: str = "data.yaml") -> list[str] | None:
    """The `names:` of a YOLO data.yaml (a list or an index: name mapping), None without one; SourceError if bad."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourceError(f"{where}: malformed YAML: {exc}") from exc
    names = doc.get("names") if isinstance(doc, dict) else None
    if names is None:
        return None
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        return _names_from_mapping(names, where)
    raise SourceError(f"{where}: 'names' must be a list or an index: name mapping")


def _names_from_mapping(mapping: dict[Any, Any], where: str) -> list[str]:
    try:
        idx = {int(k): str(v) for k, v in mapping.items()}
    except (TypeError, ValueError) as exc:
        raise SourceError(f"{where}: names mapping keys must be class indices: {exc}") from exc
    if sorted(idx) != list(range(len(idx))):
        raise SourceError(f"{where}: names mapping must cover indices 0..{len(idx) - 1}, got {sorted(idx)}")
    return [idx[i] for i in range(len(idx))]


def _class_names(root: Path) -> tuple[list[str] | None, str | None]:
    """(class names, the file that gave them) from the first data.yaml spelling present, else classes.txt."""
    for name in NAMES_FILES:
        f = root / name
        if f.is_file():
            return class_names_from_yaml(read_annotation_text(f), str(f)), f.name
    if (root / "classes.txt").is_file():
        text = read_annotation_text(root / "classes.txt")
        return [ln.strip() for ln in text.splitlines() if ln.strip()], "classes.txt"
    return None, None


def _read_labels(
    item: SourceItem, label_file: Path, rel_label: str, names: list[str] | None, names_file: str | None
) -> int:
    """Add a label file's boxes to `item` (or set its error); returns the highest class index seen, -1 if none."""
    try:
        lines = label_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        item.error = f"{rel_label}: cannot read: {exc}"
        return -1
    max_class = -1
    for ln, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{rel_label} line {ln}"
        vals = finite(parts[1:]) if len(parts) == 5 else None
        if vals is None or not re.fullmatch(r"\d+", parts[0]):
            item.error = f"{where}: expected 'class cx cy w h' (integer class, 4 finite numbers), got {line!r}"
            break
        cls = int(parts[0])
        if names is not None and cls >= len(names):
            item.error = f"{where}: unknown class {cls}; {names_file} names {len(names)} classes (0..{len(names) - 1})"
            break
        max_class = max(max_class, cls)
        cx, cy, w, h = vals
        item.boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        item.labels.append(cls)
        item.refs.append(where)
    return max_class


def _label_files(label_dir: Path) -> list[Path]:
    """The *.txt label files under labels/, sorted; hidden files and labelImg's classes.txt are not labels."""
    if not label_dir.is_dir():
        return []
    return sorted(
        f
        for f in label_dir.rglob("*.txt")
        if f.is_file()
        and f.name != "classes.txt"
        and not any(p.startswith(".") for p in f.relative_to(label_dir).parts)
    )


def read_yolo(path: Path, classes: Sequence[str] | None = None) -> Source:
    """YOLO: images/ (any depth), labels/ mirroring it with `class cx cy w h` (normalised) lines, data.yaml names."""
    path = Path(path)
    root = path.parent if path.is_file() else path
    names, names_file = _class_names(root)
    wanted = class_list(classes)
    if wanted is not None:
        names, names_file = wanted, "--classes"
    image_dir = root / "images" if (root / "images").is_dir() else root
    label_dir = root / "labels"
    keys, items, used_labels = Keys(), [], set()
    max_class = -1
    for img in images_under(image_dir):
        if image_dir == root and img.is_relative_to(label_dir):
            continue
        rel = img.relative_to(image_dir)
        item = SourceItem(keys.make(rel.as_posix()), relative(img, root), img, normalized=True)
        items.append(item)
        label_file = (label_dir / rel).with_suffix(".txt")
        used_labels.add(label_file)
        if label_file.is_file():  # YOLO convention: an image without a label file has no objects
            found = _read_labels(item, label_file, relative(label_file, root), names, names_file)
            max_class = max(max_class, found)
    warnings = [
        f"{relative(f, root)}: no image for this label file (looked for "
        f"{relative((image_dir / f.relative_to(label_dir)).with_suffix('.*'), root)}); its boxes are not converted"
        for f in _label_files(label_dir)
        if f not in used_labels
    ]
    if names is None:
        names = [str(i) for i in range(max_class + 1)]
        warnings.append(f"{root}: no data.yaml or classes.txt with class names; using indices as names")
    return Source(root, "yolo", names, items, warnings)
