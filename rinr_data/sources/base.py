"""What every reader shares: the scanned-dataset types, key and file helpers, and loading a sample for encoding."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..core.frames import clip_boxes
from ..errors import SampleError, SourceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".avif")


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


def images_under(folder: Path) -> list[Path]:
    """Image files anywhere under `folder`, sorted, skipping hidden files and folders."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not _hidden(p.relative_to(folder))
    )


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


class Keys:
    """Turns relative paths into unique shard keys: no dots (webdataset splits the key at the first dot)."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def make(self, rel: str) -> str:
        """A key for `rel` not handed out before: its stem with odd characters as `_`, then `-2`, `-3`..."""
        stem = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "sample"
        key, n = base, 1
        while key in self.used:
            n += 1
            key = f"{base}-{n}"
        self.used.add(key)
        return key


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root` as a posix string, or its bare name when it lies outside."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def inside_root(name: str | Path, root: Path, base: Path | None = None) -> bool:
    """Whether the annotation path `name`, read from `base` (default `root`), stays inside the dataset `root`.

    Absolute paths never do; `..` may climb only within the root. Lexical, so a symlink the user placed inside the
    dataset is trusted as laid out.
    """
    if Path(name).is_absolute():
        return False
    # abspath, not normpath alone: with root "." a normalised "../x.png" would still count as relative to it.
    full = Path(os.path.abspath((root if base is None else base) / name))
    return full.is_relative_to(os.path.abspath(root))


def outside_root_error(where: str, field_name: str, name: str, root: Path) -> str:
    """The message for an annotation path that leaves the dataset root."""
    return f"{where}: {field_name} {name!r} points outside the dataset root {root}; refused"


def is_file(path: Path) -> bool:
    """`path.is_file()`, False for a name the file system refuses (too long, bad bytes) instead of an OSError."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def find_image(name: str, folders: Sequence[Path], root: Path, stem_fallback: bool = False) -> Path | None:
    """First existing `folder/name` inside `root`; with stem_fallback also `folder/<stem>.<any image suffix>`."""
    for folder in folders:
        # Each folder is checked on its own: `../images/a.png` is fine from annotations/ but leaves the root from root.
        if inside_root(name, root, folder) and is_file(folder / name):
            return folder / name
    if stem_fallback:
        stem = Path(name).stem
        for folder in folders:
            for suffix in IMAGE_SUFFIXES:
                for cand in (folder / (stem + suffix), folder / (stem + suffix.upper())):
                    if is_file(cand):
                        return cand
    return None


def annotation_file(path: Path, candidates: Callable[[Path], list[Path]], what: str) -> tuple[Path, Path]:
    """(annotation file, dataset root) for a file, or for a folder holding exactly one of `candidates(folder)`."""
    if not path.is_dir():
        return path, path.parent
    found = candidates(path)
    if len(found) != 1:
        raise SourceError(f"{path}: expected one {what}, found {len(found)}: {[c.name for c in found]}")
    return found[0], path


def read_annotation_text(path: Path) -> str:
    """The text of a dataset-wide annotation file; SourceError naming it if it cannot be read."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from exc


def finite(values: Sequence[Any]) -> list[float] | None:
    """`values` as floats, or None if any is not a finite number."""
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def class_list(classes: Sequence[str] | None) -> list[str] | None:
    """The user's `--classes`, stripped; SourceError if names repeat or are empty."""
    if classes is None:
        return None
    names = [str(c).strip() for c in classes]
    if len(set(names)) != len(names) or not all(names):
        raise SourceError(f"class names must be unique and non-empty, got {names}")
    return names


def label_by_name(
    pending: Sequence[tuple[SourceItem, str, Sequence[float], str]], classes: list[str] | None
) -> list[str]:
    """Add (item, class name, xyxy box, where) boxes to their items; returns the class list.

    The class list is `classes`, or else the sorted names seen on samples without errors. A name outside it fails
    its sample; the sample's later boxes are skipped.
    """
    names = classes if classes is not None else sorted({name for item, name, _, _ in pending if not item.error})
    for item, name, box, where in pending:
        if item.error:
            continue
        if name not in names:
            item.error = f"{where}: unknown class {name!r}; known classes: {names}"
            continue
        item.boxes.append(tuple(box))  # type: ignore[arg-type]
        item.labels.append(names.index(name))
        item.refs.append(where)
    return names


# ---------------------------------------------------------------------------------------------- loading


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"size must look like WxH with positive integers, e.g. 384x288, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def target_size(
    width: int, height: int, size: tuple[int, int] | None = None, max_side: int | None = None
) -> tuple[int, int]:
    """(width, height) after resizing: exactly `size`, or scaled down so the longer side is at most max_side."""
    if size is not None:
        return size
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


_UINT16_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def _tag_values(tags: Any, tag: int) -> list[float] | None:
    """A TIFF tag's numbers (one per sample, or one), or None if it is absent or not numbers."""
    value = tags.get(tag) if tags is not None else None
    if value is None:
        return None
    values = finite(value if isinstance(value, tuple) else (value,))
    return values or None


def _value_range(mode: str, fmt: str | None, tags: Any) -> tuple[float, float] | None:
    """(black, white) sample values of a high-bit-depth gray image, or None where the file does not say."""
    if mode in _UINT16_MODES or (mode == "I" and fmt in ("PNG", "PPM")):
        return 0.0, 65535.0  # PNG (older Pillow) and 16-bit PGM come as mode I holding 0..65535
    if fmt != "TIFF":
        return None
    highs = _tag_values(tags, 341)  # SMaxSampleValue (with SMinSampleValue, 340): the range the writer declared
    if highs is not None:
        lo, hi = min(_tag_values(tags, 340) or [0.0]), max(highs)
        return (lo, hi) if hi > lo else None
    bits = _tag_values(tags, 258)  # BitsPerSample
    if mode == "I" and bits is not None and max(bits) <= 16:
        return 0.0, float(2 ** int(max(bits)) - 1)
    return None  # 32-bit integers and floats carry no range of their own: guessing one could wash the image out


def _to_rgb8(pil: Any, item: SourceItem) -> Any:
    """The image as 8-bit RGB; high-bit-depth gray scaled from its declared range, SampleError if it has none."""
    from PIL import Image

    if pil.mode not in _UINT16_MODES and pil.mode not in ("I", "F"):
        return pil.convert("RGB")  # 8-bit modes, palettes, and 16-bit RGB(A), which Pillow reduces to 8 bits itself
    span = _value_range(pil.mode, pil.format, getattr(pil, "tag_v2", None))
    if span is None:
        raise SampleError(
            f"{item.source}: {item.image_path} is a mode {pil.mode} image ({'float' if pil.mode == 'F' else '32-bit'} "
            "samples) with no declared value range; convert it to 8 or 16 bits per sample"
        )
    values = np.asarray(pil)
    lo, hi = span
    if (lo, hi) == (0.0, 65535.0):
        # The high byte, as Pillow reduces 16-bit RGB PNGs, so gray and colour 16-bit images agree.
        gray = (np.clip(values, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
    else:
        scaled = (np.clip(values.astype(np.float64), lo, hi) - lo) / (hi - lo) * 255.0
        gray = np.rint(np.nan_to_num(scaled, nan=0.0)).astype(np.uint8)
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")


def load_sample(item: SourceItem, size: tuple[int, int] | None = None, max_side: int | None = None) -> LoadedSample:
    """Read the image, validate and clip its boxes, resize both; raise SampleError naming the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if item.error:
        raise SampleError(item.error)
    try:
        with Image.open(item.image_path) as pil:
            pil.load()
            # Annotations (COCO tools, labelImg, CVAT) are drawn on the image as displayed, i.e. after its EXIF
            # orientation; without this a phone photo would be stored sideways under boxes meant for it upright.
            ImageOps.exif_transpose(pil, in_place=True)
            rgb = _to_rgb8(pil, item)
    except SampleError:
        raise  # already names the file; a ValueError, so it must pass before the clause below
    except FileNotFoundError as exc:
        raise SampleError(f"{item.source}: image not found ({item.image_path})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise SampleError(f"{item.source}: cannot read image {item.image_path}: {exc}") from exc
    width, height = rgb.size
    notes = []
    if item.declared_size is not None and item.declared_size != (width, height):
        notes.append(
            f"{item.source}: annotation says {item.declared_size[0]}x{item.declared_size[1]}, "
            f"image is {width}x{height}; boxes used as annotated"
        )
    boxes = np.asarray(item.boxes, dtype=np.float64).reshape(-1, 4)
    if item.normalized:
        boxes = boxes * np.array([width, height, width, height], dtype=np.float64)
    # One box at a time first, so a degenerate box fails naming its own annotation rather than "box i".
    for i, box in enumerate(boxes):
        try:
            clip_boxes(box[None], height, width, warn=False)
        except ValueError as exc:
            msg = str(exc).split(": ", 1)[0].replace("box 0 ", "box ")
            raise SampleError(f"{item.refs[i]}: {msg}: {[round(v, 3) for v in box.tolist()]}") from exc
    clipped = clip_boxes(boxes, height, width, warn=False)
    for i in np.flatnonzero((clipped != boxes).any(axis=1)):
        notes.append(
            f"{item.refs[i]}: box {[round(v, 3) for v in boxes[i].tolist()]} extends outside the "
            f"{width}x{height} image; clipped"
        )
    new_w, new_h = target_size(width, height, size, max_side)
    if (new_w, new_h) != (width, height):
        rgb = rgb.resize((new_w, new_h), Image.Resampling.LANCZOS)
        clipped = clipped * np.array([new_w / width, new_h / height, new_w / width, new_h / height])
    return LoadedSample(item, np.asarray(rgb, dtype=np.uint8).copy(), clipped, list(item.labels), notes)
