"""rinr-data: datasets shipped as residual implicit neural representations, decoded in batches on the GPU."""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .codecs import PRESETS, ClassicConfig, GridConfig, PaperConfig, SceneConfig
from .codecs.base import EncodedFrame
from .decode import decode, decode_batch, decode_records
from .decode import pack as pack_record
from .decode import unpack as unpack_record
from .encode import encode, encode_batch, encode_frames, encode_sequence, encode_sequence_frames, warm_up
from .errors import FormatError
from .format import FORMAT_VERSION
from .pipeline.augment import AugmentConfig
from .pipeline.dataset import RINRDataset
from .pipeline.loader import RINRLoader

__all__ = [
    "GridConfig",
    "PaperConfig",
    "ClassicConfig",
    "SceneConfig",
    "PRESETS",
    "FormatError",
    "FORMAT_VERSION",
    "EncodedFrame",
    "encode",
    "encode_batch",
    "encode_frames",
    "encode_sequence",
    "encode_sequence_frames",
    "warm_up",
    "decode",
    "decode_batch",
    "decode_records",
    "pack_record",
    "unpack_record",
    "RINRDataset",
    "RINRLoader",
    "AugmentConfig",
    "CodecConfig",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Deprecated names stay importable for a release; each use warns.
    if name == "CodecConfig":
        from .codecs import CodecConfig

        return CodecConfig
    if name == "Record":
        import warnings

        from .codecs.paper import Record

        warnings.warn(
            "rinr_data.Record is deprecated: use rinr_data.codecs.paper.Record", DeprecationWarning, stacklevel=2
        )
        return Record
    raise AttributeError(f"module 'rinr_data' has no attribute {name!r}")
