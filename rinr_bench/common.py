"""What several benchmark tools share: checkout paths, the machine line, frame loading and codec configs by preset."""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rinr_data import GridConfig, PaperConfig, codecs
from rinr_data.core.frames import to_chw_uint8
from rinr_data.sources import load_sample, open_source

ROOT = Path(__file__).resolve().parents[1]  # the checkout: the tools' defaults point into it
SHARED_DATA = ROOT.parent / "shared" / "data"  # the real evaluation sets, kept beside the checkout


def machine(device: torch.device | str | None = None) -> str:
    """One line naming the machine the numbers came from (the GPU: `device`'s, else the current one if any)."""
    if device is None:
        dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    else:
        device = torch.device(device)
        dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
        f"threads, {dev}; torch {torch.__version__}, Python {platform.python_version()}"
    )


def load_frames(
    path: Path,
    limit: int,
    consecutive: bool = False,
) -> tuple[list[torch.Tensor], list[np.ndarray], list[str]]:
    """Up to `limit` frames (evenly spaced, or the first ones; 0: all) of a dataset folder as uint8 [3, H, W], with
    their xyxy boxes and source names."""
    items = open_source(path).items
    step = max(1, len(items) // limit) if limit and not consecutive else 1
    loaded = [load_sample(item) for item in (items[::step][:limit] if limit else items)]
    images = [to_chw_uint8(s.image) for s in loaded]
    return images, [np.asarray(s.boxes, np.float64).reshape(-1, 4) for s in loaded], [s.item.source for s in loaded]


def config_class(preset: str) -> type:
    """The config class of INR codec `preset` (GridConfig or PaperConfig; ValueError for any other name)."""
    if preset not in codecs.PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(codecs.PRESETS)}")
    return codecs.get(preset).config_class


def codec_config(preset: str, **fields: Any) -> GridConfig | PaperConfig:
    """The config of INR codec `preset` with `fields` set; the tools take options of both codecs on one command
    line, so fields the codec lacks, and fields given as None (the codec's default), are left out."""
    cls = config_class(preset)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in fields.items() if k in known and v is not None})


def preset_default(preset: str, name: str) -> Any:
    """The default of field `name` in the config of INR codec `preset`."""
    return config_class(preset).__dataclass_fields__[name].default
