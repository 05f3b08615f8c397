"""The codec registry: every codec by its name, by its record wire id and by its shard member kind.

This is the one place that knows which codecs exist; everything else asks it (as CompressAI's model zoo or
torchvision's `get_model` do), so adding a codec means adding a package here and one line below.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from ..errors import FormatError
from ..format.container import read_header
from . import classic, grid, paper
from .base import Codec, EncodedFrame, FittedConfig, Packed
from .classic import ClassicConfig
from .grid import GridConfig, SceneConfig
from .paper import PaperConfig

_CODECS: dict[str, Any] = {grid.CODEC.name: grid.CODEC, paper.CODEC.name: paper.CODEC, **classic.CODECS}
_BY_WIRE_ID: dict[int, Any] = {c.wire_id: c for c in _CODECS.values() if c.wire_id is not None}
RECORD_MEMBER = "rinr"  # the shard member kind of every codec that writes rinr records

DEFAULT = grid.CODEC.name
PRESETS = tuple(name for name, c in _CODECS.items() if c.member == RECORD_MEMBER)  # the INR codecs: grid, paper
MEMBERS = (RECORD_MEMBER, *classic.CLASSIC_CODECS)  # what a shard member can hold


def get(name: str) -> Codec:
    """The codec called `name` (ValueError listing the valid names)."""
    if name not in _CODECS:
        raise ValueError(f"unknown codec {name!r}; valid codecs: {', '.join(_CODECS)}")
    return _CODECS[name]


def for_config(config: Any) -> Codec:
    """The codec a config belongs to (TypeError for an object that is no codec's config)."""
    for codec in _CODECS.values():
        if type(config) is codec.config_class:
            return codec
    raise TypeError(
        f"{type(config).__name__} is not a codec config; use one of "
        f"{', '.join(sorted({c.config_class.__name__ for c in _CODECS.values()}))}"
    )


def for_parsed(parsed: Any) -> Codec:
    """The codec that parsed `parsed` (TypeError for anything no codec parses to)."""
    for codec in _CODECS.values():
        if isinstance(parsed, codec.parsed_type):
            return codec
    raise TypeError(f"{type(parsed).__name__} is not a parsed record or image of any codec")


def for_record(blob: bytes) -> Codec:
    """The codec whose wire id a record's header names (raises FormatError)."""
    head = read_header(blob)
    if head.codec_id not in _BY_WIRE_ID:
        raise FormatError(
            f"unknown codec id {head.codec_id}; known: "
            + ", ".join(f"{i} ({c.wire_name})" for i, c in sorted(_BY_WIRE_ID.items()))
        )
    return _BY_WIRE_ID[head.codec_id]


def for_member(member: str, data: bytes) -> Codec:
    """The codec that reads a shard member of kind `member` ("rinr": the one its record header names)."""
    if member == RECORD_MEMBER:
        return for_record(data)
    if member not in classic.CODECS:
        raise FormatError(f"unknown member kind {member!r}; known: {', '.join(MEMBERS)}")
    return classic.CODECS[member]


def parse(data: bytes, member: str = RECORD_MEMBER) -> tuple[Codec, Any]:
    """A shard member parsed by its codec: (codec, parsed) (raises FormatError)."""
    codec = for_member(member, data)
    return codec, codec.parse(data)


def for_output(member: str, config: Any, quality: int | None = None) -> tuple[Codec, Any]:
    """The codec and config that write shard members of kind `member`: "rinr" takes the INR codec of `config`
    (GridConfig or PaperConfig), a classic kind its quality."""
    if member == RECORD_MEMBER:
        codec = for_config(config)
        if codec.member != RECORD_MEMBER:
            raise ValueError(
                f"codec rinr needs an INR codec config ({', '.join(PRESETS)}), not {type(config).__name__}"
            )
        return codec, config
    if member not in classic.CODECS:
        raise ValueError(f"unknown codec {member!r}; valid codecs: {', '.join(MEMBERS)}")
    codec = classic.CODECS[member]
    cfg = ClassicConfig(quality)
    codec.quality(cfg)  # validates
    return codec, cfg


def config(preset: str = DEFAULT, **fields: Any) -> Any:
    """A codec's config by name with some fields set (ValueError for a name, TypeError for a field it lacks)."""
    codec = get(preset)
    return codec.config_class(**fields)


def CodecConfig(preset: str = DEFAULT, **fields: Any) -> Any:  # noqa: N802 - the deprecated class name
    """Deprecated: use GridConfig or PaperConfig. Builds the config of `preset`, ignoring fields it does not read."""
    warnings.warn(
        "CodecConfig is deprecated: use rinr_data.GridConfig (preset 'grid') or rinr_data.PaperConfig (preset 'paper')",
        DeprecationWarning,
        stacklevel=2,
    )
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    cls = get(preset).config_class
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in fields.items() if k in known and v is not None})


__all__ = [
    "DEFAULT",
    "MEMBERS",
    "PRESETS",
    "RECORD_MEMBER",
    "ClassicConfig",
    "Codec",
    "CodecConfig",
    "EncodedFrame",
    "FittedConfig",
    "GridConfig",
    "Packed",
    "PaperConfig",
    "SceneConfig",
    "config",
    "for_config",
    "for_member",
    "for_output",
    "for_parsed",
    "for_record",
    "get",
    "parse",
]
