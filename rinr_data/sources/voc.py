"""Pascal VOC: one XML per image with <object><name> and <bndbox> xyxy pixels; classes from the names used."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from .base import (
    Keys,
    Source,
    SourceItem,
    class_list,
    find_image,
    finite,
    inside_root,
    label_by_name,
    outside_root_error,
    relative,
)

_Object = tuple[str, "list[float] | None", str]  # class name, xyxy (None if unreadable), where


def is_voc_folder(path: Path) -> bool:
    """Whether the folder, or its Annotations/, holds *.xml files."""
    return any(path.glob("*.xml")) or any((path / "Annotations").glob("*.xml"))


def _parse_xml(xml_file: Path, rel_xml: str) -> tuple[str | None, tuple[int, int] | None, list[_Object], str | None]:
    """(image file name, declared (width, height), objects, error) of one annotation file."""
    objects: list[_Object] = []
    error, filename, declared = None, None, None
    try:
        root_el = ET.parse(xml_file).getroot()
        if root_el.tag != "annotation":  # e.g. a CVAT <annotations> export: not one image's VOC file
            return None, None, [], f"{rel_xml}: root element is <{root_el.tag}>, not <annotation>; not a VOC file"
        filename = (root_el.findtext("filename") or "").strip() or None
        w, h = root_el.findtext("size/width"), root_el.findtext("size/height")
        if w and h and w.strip().isdigit() and h.strip().isdigit():
            declared = (int(w), int(h))
        for k, obj in enumerate(root_el.iter("object"), start=1):
            name = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            vals = None
            if bb is not None:
                vals = finite([bb.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")])
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
    return filename, declared, objects, error


def read_voc(path: Path, classes: Sequence[str] | None = None) -> Source:
    """Pascal VOC: one XML per image (in the folder or Annotations/), images beside it, in JPEGImages/ or images/."""
    path = Path(path)
    xml_dir = path / "Annotations" if (path / "Annotations").is_dir() else path
    folders = [xml_dir, path, path / "JPEGImages", path / "images"]
    wanted = class_list(classes)
    keys, items, pending = Keys(), [], []
    for xml_file in sorted(xml_dir.glob("*.xml")):
        rel_xml = relative(xml_file, path)
        filename, declared, objects, error = _parse_xml(xml_file, rel_xml)
        if filename and not inside_root(filename, path, xml_dir):
            error = outside_root_error(rel_xml, "<filename>", filename, path)
            filename = None  # the XML's own stem names the item; nothing outside the root is looked up
        image = find_image(filename, folders, path, stem_fallback=True) if filename else None
        # DeepForest-style exports name a .tif in the XML next to a .png: fall back to the XML's own stem.
        image = image or find_image(xml_file.stem + ".png", folders, path, stem_fallback=True)
        image = image or xml_dir / (filename or xml_file.stem)
        item = SourceItem(keys.make(xml_file.stem), relative(image, path), image, declared_size=declared, error=error)
        items.append(item)
        pending += [(item, name, vals, where) for name, vals, where in objects]
    return Source(path, "voc", label_by_name(pending, wanted), items)
