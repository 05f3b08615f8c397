"""The reader registry: format names, guessing a dataset's format, and `open_source`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..errors import SourceError
from .base import Source
from .coco import is_coco_folder, json_files, read_coco
from .deepforest import is_csv_folder, read_csv
from .folder import has_images, read_folder
from .voc import is_voc_folder, read_voc
from .yolo import is_yolo_folder, read_yolo

READERS: dict[str, Callable[..., Source]] = {
    "coco": read_coco,
    "yolo": read_yolo,
    "voc": read_voc,
    "csv": read_csv,
    "folder": read_folder,
}
FORMATS = tuple(READERS)

_FILE_FORMATS = {".json": "coco", ".csv": "csv", ".yaml": "yolo", ".yml": "yolo"}
# The first match wins: the most specific layouts go first, a plain image folder (which every dataset is) last.
_FOLDER_PROBES: tuple[tuple[str, Callable[[Path], bool]], ...] = (
    ("yolo", is_yolo_folder),
    ("coco", is_coco_folder),
    ("voc", is_voc_folder),
    ("csv", is_csv_folder),
    ("folder", has_images),
)


def detect_format(path: str | Path) -> str:
    """Guess the dataset format of a file or folder; raise SourceError listing what was looked for."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in _FILE_FORMATS:
            return _FILE_FORMATS[suffix]
        raise SourceError(
            f"{path}: cannot tell the format of a {suffix or 'suffix-less'} file; "
            "pass a folder, a COCO .json, a .csv or a YOLO data.yaml, or set --format"
        )
    for fmt, probe in _FOLDER_PROBES:
        if probe(path):
            if fmt == "folder":
                _refuse_stray_json(path)
            return fmt
    raise SourceError(
        f"{path}: no dataset found (looked for data.yaml or images/+labels/ (YOLO), a COCO *.json, "
        "*.xml (VOC), *.csv and image files); set --format"
    )


def _refuse_stray_json(path: Path) -> None:
    """SourceError for a JSON file next to images that is not COCO: reading them as a plain folder drops its boxes."""
    stray = json_files(path)  # all parsed as JSON by the COCO probe already, none with COCO's keys
    if stray:
        raise SourceError(
            f"{stray[0]}: not a COCO detection file (needs an 'images' list and 'annotations'), so the images here "
            "would be stored without boxes; fix the file, or set --format folder to ignore it"
        )


def open_source(path: str | Path, format: str = "auto", classes: Sequence[str] | None = None) -> Source:
    """Scan a dataset (format "auto" detects it); `classes` fixes the class list where the format has none."""
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in READERS:
        raise ValueError(f"unknown dataset format {format!r}; valid formats: auto, {', '.join(FORMATS)}")
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    return READERS[fmt](path, classes=classes)
