"""A plain folder of images, without annotations."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .base import Keys, Source, SourceItem, class_list, images_under, relative


def has_images(path: Path) -> bool:
    """Whether any image lies under the folder."""
    return bool(images_under(path))


def read_folder(path: Path, classes: Sequence[str] | None = None) -> Source:
    """Every image under the folder (sorted by path), without boxes."""
    path = Path(path)
    keys = Keys()
    items = [SourceItem(keys.make(relative(p, path)), relative(p, path), p) for p in images_under(path)]
    return Source(path, "folder", class_list(classes) or [], items)
