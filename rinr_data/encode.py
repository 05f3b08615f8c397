"""Encode front door: frames and their boxes to records, through the codec registry.

The config names the codec (GridConfig, PaperConfig, ClassicConfig); with no config the default codec's defaults
apply.
"""

from __future__ import annotations

from typing import Any, Sequence

from . import codecs
from .codecs.base import EncodedFrame


def _codec(config: Any) -> tuple[Any, Any]:
    if config is None:
        codec = codecs.get(codecs.DEFAULT)
        return codec, codec.config_class()
    return codecs.for_config(config), config


def encode_frames(
    images: Sequence[Any], boxes_list: Sequence[Any], config: Any = None, progress: bool = False
) -> list[EncodedFrame]:
    """Encode frames together (INRs of one shape fitted in one batch) and report what each record achieves."""
    codec, config = _codec(config)
    return codec.encode(images, boxes_list, config, progress)


def encode_batch(images: Sequence[Any], boxes_list: Sequence[Any], config: Any = None) -> list[bytes]:
    """Encode frames together; all INRs of the same shape across the batch are fitted in one stacked call."""
    return [f.blob for f in encode_frames(images, boxes_list, config)]


def encode(image: Any, boxes: Any = None, config: Any = None) -> bytes:
    """Encode one frame (HxWx3 uint8 numpy, PIL image or uint8 [3, H, W] tensor) with its xyxy boxes."""
    return encode_batch([image], [boxes], config)[0]


def warm_up(images: Sequence[Any], boxes_list: Sequence[Any], config: Any = None, progress: bool = False) -> Any:
    """`config` with a warm start learned on these sample frames of a dataset, so `encode_frames` fits the others in
    `warm_steps` steps (rinr-encode does this itself); unchanged for codecs without warm starts."""
    codec, config = _codec(config)
    if not hasattr(codec, "learn_warm_start"):
        return config
    return config.replace(warm=codec.learn_warm_start(images, boxes_list, config, progress))


def encode_sequence_frames(
    images: Sequence[Any], boxes_list: Sequence[Any], config: Any = None, progress: bool = False
) -> tuple[dict[str, bytes], list[EncodedFrame]]:
    """`encode_sequence` that also reports what each frame record achieves (PSNR as decoded with its scene)."""
    codec, config = _codec(config)
    if not getattr(codec, "supports_scenes", False):
        raise ValueError(f"scene mode needs the 'grid' preset, not {codec.name!r}")
    return codec.encode_sequence(images, boxes_list, config, progress)


def encode_sequence(
    images: Sequence[Any], boxes_list: Sequence[Any], config: Any = None, progress: bool = False
) -> tuple[dict[str, bytes], list[bytes]]:
    """Scene mode: frames of one static camera share scene background records.

    Returns (scene records by id, one record per frame); each frame record names its scene, and its latents are
    added to the scene's. A scene background is fitted to the median of the next `config.scene.window` frames and
    serves every following frame it reproduces at `background_psnr` (outside the boxes; `SceneConfig.cut_psnr`
    when set); the first frame it does not reproduce starts the next scene.
    """
    scenes, frames = encode_sequence_frames(images, boxes_list, config, progress)
    return scenes, [f.blob for f in frames]
