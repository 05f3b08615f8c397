"""Video-codec baselines for static cameras: a frame sequence coded as one AV1 or VP9 stream through PyAV.

What a user with a fixed camera could store instead of per-frame files or RINR's scene mode (issue 24, item 4): the
training frames, in their order, coded at one constant quality either all-intra (every frame a keyframe, random access
like an image codec) or with inter frames (a keyframe every `gop` frames). The bytes are the stream's packets plus its
header; the decoded frames go into lossless shards so the detector trains on exactly what the video decoder gives.
PyAV is a benchmark-only dependency (in the `dev` extra), imported where used: the library never imports this module.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from rinr_data import shards
from rinr_data.core.frames import to_chw_uint8
from rinr_data.sources import Source

from .compare import load_samples, write_lossless_shards

# Encoders the PyAV wheels carry: SVT-AV1 for AV1 (dav1d decodes it), libvpx for VP9.
ENCODERS = {"av1": "libsvtav1", "vp9": "libvpx-vp9"}
NAMES = {"av1": "AV1 (SVT-AV1)", "vp9": "VP9 (libvpx)"}
# Constant-quality mode at a slower-than-default speed, as a user archiving a dataset would pick: SVT-AV1 preset 6
# (its default 10 is tuned for live encoding), libvpx-vp9 in "good" mode at cpu-used 2 with no bitrate cap.
OPTIONS = {"av1": {"preset": "6"}, "vp9": {"b": "0", "deadline": "good", "cpu-used": "2"}}
CRF_RANGE = {"av1": range(0, 64), "vp9": range(0, 64)}
DEFAULT_GOP = 32  # as a scene of RINR's scene mode (SceneConfig.window): one keyframe per 32 frames


@dataclass(frozen=True)
class VideoSpec:
    """One video coding: codec, constant-quality factor (CRF, higher is fewer bytes) and keyframe interval."""

    codec: str
    crf: int
    gop: int = DEFAULT_GOP

    def __post_init__(self) -> None:
        if self.codec not in ENCODERS:
            raise ValueError(f"unknown video codec {self.codec!r} (known: {', '.join(ENCODERS)})")
        if self.crf not in CRF_RANGE[self.codec]:
            r = CRF_RANGE[self.codec]
            raise ValueError(f"{self.codec} CRF must be in {r.start}..{r.stop - 1}, got {self.crf}")
        if self.gop < 1:
            raise ValueError(f"keyframe interval must be >= 1 frame, got {self.gop}")

    @property
    def name(self) -> str:
        """Condition name: `av1-g32-crf45`, `vp9-g1-crf40` (g1: all-intra)."""
        return f"{self.codec}-g{self.gop}-crf{self.crf}"

    @property
    def family(self) -> str:
        """Codec family of the parity table: intra-only and inter streams compete apart."""
        return f"{NAMES[self.codec]} " + ("all-intra" if self.gop == 1 else f"video, keyframe every {self.gop}")

    @property
    def label(self) -> str:
        """Table label."""
        return f"{self.family}, CRF {self.crf}"


def parse_video(text: str) -> list[VideoSpec]:
    """`"av1:40,50;av1/1:30;vp9/16:45"` (CODEC[/GOP]:CRF,...) -> specs (ValueError naming the bad entry)."""
    out = []
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        head, sep, crfs = entry.partition(":")
        codec, _, gop = head.partition("/")
        try:
            if not sep or not crfs.strip():
                raise ValueError("no CRF given")
            out += [VideoSpec(codec.strip(), int(c), int(gop) if gop else DEFAULT_GOP) for c in crfs.split(",")]
        except ValueError as exc:
            raise ValueError(f"bad --video entry {entry!r} (want CODEC[/GOP]:CRF,...): {exc}") from None
    return out


@dataclass(frozen=True)
class CodedVideo:
    """A sequence after coding: its bytes, the decoded frames and what coding and decoding cost."""

    spec: VideoSpec
    nbytes: int  # packets plus the stream header
    frames: list[torch.Tensor]  # decoded uint8 [3, H, W], in the input's order
    encode_s: float
    decode_ms: float  # per frame, decoding the whole stream in order
    random_access_ms: float  # mean over frames: one frame alone, decoded from its keyframe by a reset decoder

    @property
    def bytes_per_frame(self) -> float:
        """Stream bytes per frame."""
        return self.nbytes / len(self.frames)


def write_video_shards(
    source: Source, out: str | Path, spec: VideoSpec, *, max_side: int | None = None, shard_size: int = 1000
) -> dict:
    """Code `source`'s frames (in its order, after any resize) as one stream and store the decoded frames losslessly
    in shards under `out`; returns what the stream cost (the manifest's `codec_config`, reused where `out` holds it)."""
    out = Path(out)
    if (out / shards.MANIFEST).is_file():
        config = shards.read_manifest(out).get("codec_config", {})
        if config.get("video") == spec.name:
            return config
    samples = load_samples(source, max_side=max_side)
    coded = encode_video([to_chw_uint8(s.image) for s in samples], spec)
    config = {
        "video": spec.name,
        "encoder": ENCODERS[spec.codec],
        "options": {"crf": spec.crf, "gop": spec.gop, **OPTIONS[spec.codec]},
        "frames": len(coded.frames),
        "bytes": coded.nbytes,
        "bytes_per_frame": coded.bytes_per_frame,
        "encode_s": coded.encode_s,
        "decode_ms": coded.decode_ms,
        "random_access_ms": coded.random_access_ms,
    }
    write_lossless_shards(
        source,
        out,
        max_side=max_side,
        shard_size=shard_size,
        images=coded.frames,
        codec_config=config,
        samples=samples,
    )
    return config


def _check_frames(frames: Sequence[torch.Tensor]) -> tuple[int, int]:
    if not frames:
        raise ValueError("a video needs at least one frame")
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"a video's frames must share one size, got {sorted(shapes)}")
    c, h, w = frames[0].shape
    if c != 3 or frames[0].dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 [3, H, W], got {frames[0].dtype} {tuple(frames[0].shape)}")
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 video needs an even width and height, got {w}x{h}")
    return h, w


def encode_video(frames: Sequence[torch.Tensor], spec: VideoSpec, random_access: int = 16) -> CodedVideo:
    """Code `frames` (uint8 [3, H, W], one size, even sides) as one stream, decode it back and time both.

    Random access is timed on `random_access` frames spread over the sequence (0: all of them).
    """
    # SVT-AV1 prints its whole configuration at its default log level, once per stream; keep its warnings.
    os.environ.setdefault("SVT_LOG", "2")
    import av  # benchmark-only dependency, imported where used

    h, w = _check_frames(frames)
    buf = io.BytesIO()
    container = av.open(buf, "w", format="ivf")
    # Options must reach the encoder when it opens (PyAV applies them in add_stream).
    stream = container.add_stream(ENCODERS[spec.codec], rate=25, options={"crf": str(spec.crf), **OPTIONS[spec.codec]})
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.codec_context.gop_size = spec.gop
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.permute(1, 2, 0).numpy()), format="rgb24")
        picture.pts = i
        container.mux(stream.encode(picture))
    container.mux(stream.encode(None))
    encode_s = time.perf_counter() - start
    container.close()
    data = buf.getvalue()
    packets, decoder_name, header = _demux(data)
    nbytes = sum(len(p) for p, _, _ in packets) + len(header)
    decoded, decode_s = _decode_all(data)
    if len(decoded) != len(frames):
        raise RuntimeError(f"{spec.name}: {len(frames)} frames coded but {len(decoded)} decoded")
    return CodedVideo(
        spec,
        nbytes,
        decoded,
        encode_s,
        1000 * decode_s / len(frames),
        _random_access_ms(decoder_name, header, packets, len(frames), random_access),
    )


def _demux(data: bytes) -> tuple[list[tuple[bytes, int, bool]], str, bytes]:
    """(payload, pts, keyframe) per packet in stream order, the decoder's name and the header it needs beside them."""
    import av

    with av.open(io.BytesIO(data), "r", format="ivf") as container:
        stream = container.streams.video[0]
        packets = [(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in container.demux(stream) if p.size]
        return packets, stream.codec_context.name, bytes(stream.codec_context.extradata or b"")


def _decode_all(data: bytes) -> tuple[list[torch.Tensor], float]:
    import av

    frames, start = [], time.perf_counter()
    with av.open(io.BytesIO(data), "r", format="ivf") as container:
        for picture in container.decode(video=0):
            frames.append(torch.from_numpy(picture.to_ndarray(format="rgb24")).permute(2, 0, 1).contiguous())
    return frames, time.perf_counter() - start


def _random_access_ms(name: str, header: bytes, packets: list[tuple[bytes, int, bool]], n: int, samples: int) -> float:
    """Mean ms to get one frame alone: reset the decoder, feed packets from the frame's keyframe until it comes out."""
    import av

    # One decoder, reset before each frame as a seek resets it (creating one per frame stalls dav1d's threads).
    decoder = av.CodecContext.create(name, "r")
    if header:
        decoder.extradata = header
    targets = range(n) if samples <= 0 or samples >= n else np.linspace(0, n - 1, samples).round().astype(int)
    times = []
    for target in targets:
        # Packets of AV1 and VP9 streams come in display order: the target's group starts at the last keyframe before.
        first = next(i for i, (_, pts, _) in enumerate(packets) if pts >= target)
        key = max(i for i in range(first + 1) if packets[i][2])
        start = time.perf_counter()
        decoder.flush_buffers()
        found = _feed(decoder, packets[key:], int(target))
        times.append(time.perf_counter() - start)
        if not found:
            raise RuntimeError(f"frame {target} did not decode from its keyframe (packet {key})")
    return 1000 * statistics.fmean(times)


def _feed(decoder, packets: list[tuple[bytes, int, bool]], target: int) -> bool:
    import av

    for payload, pts, _ in packets:
        packet = av.Packet(payload)
        packet.pts = pts
        if any(f.pts == target for f in decoder.decode(packet)):
            return True
    return any(f.pts == target for f in decoder.decode(None))
