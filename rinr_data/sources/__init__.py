"""Dataset readers: COCO, YOLO, Pascal VOC, DeepForest CSV and plain image folders, scanned into ordered samples.

Scanning reads every annotation file up front (cheap) so the sample order, the class list and the keys are
fixed before any image is touched: shard i of a conversion always holds the same samples. Problems that belong
to one sample (a bad label line, an unknown class, a malformed per-image XML) are recorded on that sample and
raised when it is loaded, so `--on-error skip` can drop it; problems that make the whole dataset unreadable (a
COCO file that is not JSON, a CSV without the needed columns) raise `SourceError` at once.

One module per format (`coco`, `yolo`, `voc`, `deepforest`, `folder`), the shared types and sample loading in
`base`, the format registry and detection in `detect`.
"""

from __future__ import annotations

from ..errors import SampleError, SourceError
from .base import IMAGE_SUFFIXES, LoadedSample, Source, SourceItem, load_sample, parse_size, target_size
from .coco import read_coco
from .deepforest import CSV_COLUMNS, read_csv
from .detect import FORMATS, READERS, detect_format, open_source
from .folder import read_folder
from .voc import read_voc
from .yolo import class_names_from_yaml, read_yolo

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "READERS",
    "LoadedSample",
    "SampleError",
    "Source",
    "SourceError",
    "SourceItem",
    "class_names_from_yaml",
    "detect_format",
    "load_sample",
    "open_source",
    "parse_size",
    "read_coco",
    "read_csv",
    "read_folder",
    "read_voc",
    "read_yolo",
    "target_size",
]
