"""Build small real shard folders (rinr and JPEG) for the dataset and loader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import smooth_frame

import rinr_data as R
from rinr_data import shards
from rinr_data.codecs.classic import encode_classic
from rinr_data.codecs.paper.siren import SirenShape
from rinr_data.codecs.paper.weights import QuantizedINR
from rinr_data.format.quantize import QuantizedTensor

FAST = R.GridConfig(max_steps=4)


def quantized_inr(width: int, depth: int, seed: int) -> QuantizedINR:
    """A SIREN of 8-bit integers drawn from a fixed seed (no fitting): the paper codec's records without a fit."""
    rng = np.random.default_rng(seed)
    shape = SirenShape(width, depth)
    tensors = [
        QuantizedTensor(np.clip(rng.normal(0, 30, n).round(), -127, 127).astype(np.int32), 0.0078125, 8)
        for fi, fo in shape.layer_dims()
        for n in (fi * fo, fo)
    ]
    return QuantizedINR(shape, tensors)


def frames(count: int, height: int = 16, width: int = 20) -> tuple[list[np.ndarray], list[list[list[float]]]]:
    """Synthetic frames with 0-2 boxes each."""
    images = [smooth_frame(height, width, seed=i) for i in range(count)]
    boxes = [[[1.0 + i % 5, 2.0, 9.0 + i % 5, 11.0], [12.0, 3.0, 19.0, 15.0]][: i % 3] for i in range(count)]
    return images, boxes


def write_dataset(
    out: Path, count: int = 10, shard_size: int = 3, codec: str = "rinr", sizes: list[tuple[int, int]] | None = None
) -> list[str]:
    """Encode `count` frames into shards of `shard_size` plus a manifest; returns the sample keys in order."""
    out.mkdir(parents=True, exist_ok=True)
    if sizes is None:
        images, boxes = frames(count)
    else:
        images = [smooth_frame(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
        boxes = [[[1.0, 1.0, 6.0, 7.0]] for _ in sizes]
    if codec == "rinr":
        blobs = [f.blob for f in R.encode_frames(images, boxes, FAST)]
    else:
        import torch

        blobs = [encode_classic(torch.from_numpy(i).permute(2, 0, 1), codec, 90) for i in images]
    keys = [f"frame_{i:03d}" for i in range(len(images))]
    infos = []
    for s in range(0, len(images), shard_size):
        samples = [
            shards.ShardSample(
                keys[i],
                codec,
                blobs[i],
                shards.sample_meta(
                    images[i].shape[1],
                    images[i].shape[0],
                    boxes[i],
                    [i % 2] * len(boxes[i]),
                    f"{keys[i]}.png",
                    40.0,
                    30.0,
                ),
            )
            for i in range(s, min(s + shard_size, len(images)))
        ]
        infos.append(shards.write_shard(out, shards.shard_name("shard", s // shard_size), samples))
    shards.write_manifest(
        out,
        {
            "format": "rinr-shards",
            "version": shards.LAYOUT_VERSION,
            "codec": codec,
            "classes": ["a", "b"],
            "shards": [i.manifest_entry() for i in infos],
            "samples": len(images),
        },
    )
    return keys
