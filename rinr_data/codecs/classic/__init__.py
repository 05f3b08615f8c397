"""Classic image codecs (JPEG, WebP, AVIF) through Pillow: classic-codec shards and the benchmarks' baselines.

Their shard members are plain image files, not rinr records; they sit behind the same Codec interface so the
converter, the pipeline and the CLIs treat every codec alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ...core.frames import to_chw_uint8
from ...core.metrics import region_psnr
from ...errors import FormatError
from ..base import EncodedFrame, FrameInfo
from .pillow import CLASSIC_CODECS, decode_classic, encode_classic, quality_range

# Default qualities: JPEG and WebP as their tools default, AVIF at the level where its size matches JPEG's.
DEFAULT_QUALITY = {"jpeg": 90, "webp": 90, "avif": 80}


@dataclass(frozen=True)
class ClassicConfig:
    """Settings of a classic codec: its quality (None: DEFAULT_QUALITY)."""

    quality: int | None = None


@dataclass
class EncodedImage:
    """Image bytes kept undecoded by the worker, for a decode on the device (torchvision's nvJPEG)."""

    data: torch.Tensor  # uint8 [n]
    size: tuple[int, int]  # (H, W) the sample's JSON declares


@dataclass
class PackedImages:
    """Classic frames of a batch: decoded uint8 [3, H, W] images, or EncodedImage bytes for a device decode."""

    images: list[Any]
    members: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedImages":
        """Decoded images moved to `device`; encoded bytes stay where they are until render."""
        return PackedImages(
            [i.to(device, non_blocking=non_blocking) if isinstance(i, torch.Tensor) else i for i in self.images],
            self.members,
        )

    def pin_memory(self) -> "PackedImages":
        """Page-locked copy for asynchronous host-to-GPU transfer."""
        return PackedImages([i.pin_memory() if isinstance(i, torch.Tensor) else i for i in self.images], self.members)

    def render(self, device: torch.device) -> list[torch.Tensor]:
        """Float [3, H, W] images in [0, 1] on `device` (JPEG bytes decoded there by torchvision)."""
        out = []
        for img in self.images:
            if isinstance(img, EncodedImage):
                from torchvision.io import ImageReadMode, decode_jpeg

                decoded = decode_jpeg(img.data, mode=ImageReadMode.RGB, device=device)
                if tuple(decoded.shape[-2:]) != img.size:
                    raise FormatError(
                        f"image is {decoded.shape[-1]}x{decoded.shape[-2]} but its json says "
                        f"{img.size[1]}x{img.size[0]}"
                    )
                img = decoded
            out.append(img.to(device, non_blocking=True).to(torch.float32).div_(255))
        return out

    def split(self) -> list["PackedImages"]:
        """One group per member (`members` [m]), owning its storage (uint8 images stay uint8)."""
        return [PackedImages([_owned(img)], [m]) for img, m in zip(self.images, self.members)]

    @classmethod
    def merge(cls, frames: Sequence["PackedImages"]) -> list["PackedImages"]:
        """One-frame groups (as `split` gives) as one group; members index `frames`."""
        if any(len(f.images) != 1 for f in frames):
            raise ValueError("merge takes one-frame groups")
        return [PackedImages([f.images[0] for f in frames], list(range(len(frames))))] if frames else []


def _owned(image: Any) -> Any:
    """A copy that shares no storage (a worker's shared-memory tensor is not kept alive by a held frame)."""
    if isinstance(image, EncodedImage):
        return EncodedImage(image.data.clone(), image.size)
    return image.clone()


class ClassicCodec:
    """One classic codec (JPEG, WebP or AVIF) behind the Codec interface."""

    wire_id = None
    parsed_type = (torch.Tensor, EncodedImage)
    config_class = ClassicConfig
    supports_scenes = False
    parallel_frames = True  # frames encode independently: the converter runs them on its thread pool

    def __init__(self, name: str) -> None:
        self.name = self.member = name
        self.decodes_on_device = name == "jpeg"  # torchvision decodes JPEG on CUDA (nvJPEG), not WebP or AVIF

    def keep_encoded(self, blob: bytes, size: tuple[int, int]) -> EncodedImage:
        """The bytes as a uint8 tensor, decoded later on the device (checked there against `size`)."""
        return EncodedImage(torch.frombuffer(bytearray(blob), dtype=torch.uint8), size)

    def quality(self, config: ClassicConfig | None) -> int:
        """The quality a config asks for (validated)."""
        quality = DEFAULT_QUALITY[self.name] if config is None or config.quality is None else config.quality
        valid = quality_range(self.name)
        if quality not in valid:
            raise ValueError(f"{self.name} quality must be in {valid.start}..{valid.stop - 1}, got {quality}")
        return quality

    def settings(self, config: ClassicConfig | None) -> dict[str, Any]:
        """What decides the bytes (the manifest's codec_config)."""
        return {"quality": self.quality(config)}

    def encode(
        self,
        images: Sequence[Any],
        boxes_list: Sequence[Any],
        config: ClassicConfig | None = None,
        progress: bool = False,
    ) -> list[EncodedFrame]:
        """Each frame compressed at the config's quality, with the PSNR it achieves in and outside its boxes."""
        quality = self.quality(config)
        out = []
        for image, boxes in zip(images, boxes_list):
            chw = to_chw_uint8(image)
            data = encode_classic(chw, self.name, quality)
            q = region_psnr(chw, decode_classic(data, tuple(chw.shape[1:])), boxes)
            out.append(EncodedFrame(data, np.asarray(boxes), q.full, q.objects, q.background, {}))
        return out

    def parse(self, blob: bytes) -> torch.Tensor:
        """The decoded uint8 [3, H, W] image (raises FormatError for bytes Pillow cannot decode)."""
        return decode_classic(blob)

    def describe(self, parsed: Any) -> FrameInfo:
        """The size of a decoded image (or the declared size of bytes kept for a device decode)."""
        size = parsed.size if isinstance(parsed, EncodedImage) else tuple(parsed.shape[1:])
        return FrameInfo(size)  # type: ignore[arg-type]

    def pack(self, parsed: Sequence[Any], scenes: Mapping[str, Any] | None = None) -> list[PackedImages]:
        """Decoded images (or encoded bytes) as one group."""
        return [PackedImages(list(parsed), list(range(len(parsed))))] if parsed else []


CODECS = {name: ClassicCodec(name) for name in CLASSIC_CODECS}

__all__ = [
    "CLASSIC_CODECS",
    "CODECS",
    "DEFAULT_QUALITY",
    "ClassicCodec",
    "ClassicConfig",
    "EncodedImage",
    "PackedImages",
    "decode_classic",
    "encode_classic",
    "quality_range",
]
