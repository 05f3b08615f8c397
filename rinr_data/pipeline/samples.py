"""Sample parsing, the one path from a raw shard sample to parsed CPU data: used by the dataset and by both CLIs.

A raw sample is webdataset's dict of members ({"__key__", "json", "rinr" | "jpg" | ..., "<id>.scene"}). Reading a
shard attaches its scene table to every sample (scene records may ride on any sample of the shard); parsing checks
the sample's JSON against its member and hands the member to the codec the registry names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import codecs
from ..decode import SceneTable
from ..errors import FormatError
from ..shards import check_labels, image_member, iter_shard, sample_json, scene_members, tar_samples
from .shardlist import ShardRef
from .streaming import FetchPolicy, open_shard

SCENES_KEY = "__scenes__"  # where a raw sample carries its shard's SceneTable


@dataclass
class ParsedSample:
    """One sample after the worker's CPU work: its codec's parsed member plus its targets."""

    key: str
    codec: str  # the registry name of the member's codec
    payload: Any  # what the codec parsed: a record, a decoded image, or EncodedImage bytes
    boxes: torch.Tensor  # float32 [N, 4] xyxy pixels
    labels: torch.Tensor  # int64 [N]
    size: tuple[int, int]  # (H, W)
    scene: Any = None  # the parsed scene record a scene-mode record builds on
    scene_id: str | None = None  # and its id
    meta: dict[str, Any] | None = None  # the sample's JSON


def scenes_of(samples: "Sequence[ParsedSample]") -> dict[str, Any]:
    """The parsed scenes the samples build on, by id (what a batched decode needs to resolve them)."""
    return {s.scene_id: s.scene for s in samples if s.scene_id is not None}


def with_scenes(raw: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """The samples of one shard, each carrying the shard's scene table under SCENES_KEY."""
    scenes = SceneTable(scene_members(raw), where)
    for sample in raw:
        sample[SCENES_KEY] = scenes
    return raw


def read_shard(ref: ShardRef, policy: FetchPolicy) -> tuple[list[dict[str, Any]], FormatError | None]:
    """The raw samples of one (local or remote) shard with its scenes attached, and the error that cut it short.

    A shard damaged part-way (truncated, a corrupt header) still gives the whole samples before the damage; the
    error (None for an intact shard) names the shard.
    """
    raw: list[dict[str, Any]] = []
    error = None
    try:
        with open_shard(ref.url, policy) as stream:
            for sample in tar_samples(stream, ref.url):
                raw.append(sample)
    except FormatError as exc:
        error = exc
    except Exception as exc:  # fetching or opening (OSError, HTTP errors): name the shard
        error = FormatError(f"{ref.url}: cannot read shard: {exc}")
    return with_scenes(raw, ref.url), error


def local_shard(path: str | Path) -> list[dict[str, Any]]:
    """The raw samples of a local shard file with its scenes attached."""
    path = Path(path)
    return with_scenes(list(iter_shard(path)), path.name)


def parse_sample(
    sample: dict[str, Any], keep_encoded: bool = False, classes: Sequence[str] | None = None
) -> ParsedSample:
    """Check a raw sample's JSON against its member and parse the member with its codec (raises FormatError).

    The boxes served are the record's own where the codec stores them (the JSON must agree); labels must be
    class indices of `classes` (the manifest's class names; None: any non-negative integer).
    keep_encoded: leave members undecoded where their codec decodes on the device (JPEG with nvJPEG).
    """
    key = sample["__key__"]
    meta = sample_json(sample)
    member, data = image_member(sample)
    check_labels(meta["labels"], classes)
    # float32, as records store them: the JSON's boxes are checked against a record's below in this type.
    boxes = np.asarray(meta["boxes"], np.float64).reshape(-1, 4).astype(np.float32)
    labels = torch.from_numpy(np.asarray(meta["labels"], np.int64).reshape(-1))
    size = (int(meta["height"]), int(meta["width"]))
    codec = codecs.for_member(member, data)
    if keep_encoded and getattr(codec, "decodes_on_device", False):
        payload: Any = codec.keep_encoded(data, size)
    else:
        payload = codec.parse(data)
    info = codec.describe(payload)
    scene = None
    if info.scene is not None:
        table = sample.get(SCENES_KEY) or SceneTable({})
        scene = table.get(info.scene)
    if info.size != size:
        what = "record" if member == codecs.RECORD_MEMBER else "image"
        raise FormatError(f"{what} is {info.size[1]}x{info.size[0]} but its json says {size[1]}x{size[0]}")
    if info.boxes is not None:
        stored = np.asarray(info.boxes, np.float64).reshape(-1, 4).astype(np.float32)
        if len(stored) != len(boxes):
            raise FormatError(f"record has {len(stored)} boxes but its json {len(boxes)}")
        if not np.array_equal(stored, boxes):
            raise FormatError(f"record boxes {stored.tolist()} differ from its json boxes {meta['boxes']}")
    return ParsedSample(key, codec.name, payload, torch.from_numpy(boxes), labels, size, scene, info.scene, meta)


def parse_named(sample: dict[str, Any], where: str, keep_encoded: bool = False) -> ParsedSample:
    """`parse_sample` whose FormatError names the shard and the sample."""
    try:
        return parse_sample(sample, keep_encoded)
    except FormatError as exc:
        raise FormatError(f"{where}: sample {sample.get('__key__')!r}: {exc}") from exc
