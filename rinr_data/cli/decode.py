"""rinr-decode PATH OUT: decode shards to OUT/images/{key}.png plus OUT/annotations.json (COCO) of the boxes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import FormatError
from ..shards import check_key, check_labels, find_shards, sample_json


def decoded_samples(
    paths: Sequence[str | Path], device: str = "cpu", batch: int = 16, classes: Sequence[str] | None = None
) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(key, uint8 [3, H, W] image, json) for every sample of the shards, decoded `batch` at a time.

    Raises FormatError naming the shard and sample for a damaged sample, a key met twice, or labels that are not
    class indices (below len(classes) when `classes` is given).
    """
    from ..pipeline.samples import local_shard, parse_named  # torch-backed: loaded on first decode, --help stays fast

    shard_paths, _ = find_shards(paths)
    seen: dict[str, str] = {}
    for path in shard_paths:
        pending = []
        for sample in local_shard(path):
            key = sample.get("__key__")
            try:
                # Before parsing: the labels become COCO categories, and a key met twice would overwrite a PNG.
                check_labels(sample_json(sample)["labels"], classes)
                if key in seen:
                    raise FormatError(f"the key is used twice (first in {seen[key]})")
            except FormatError as exc:
                raise FormatError(f"{path.name}: sample {key!r}: {exc}") from exc
            seen[key] = path.name
            pending.append(parse_named(sample, path.name))
            if len(pending) >= batch:
                yield from _flush(pending, device)
                pending = []
        yield from _flush(pending, device)


def _flush(pending: list[Any], device: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    from ..decode import decode_records
    from ..pipeline.samples import scenes_of

    if not pending:
        return
    for sample, img in zip(pending, decode_records([s.payload for s in pending], device, scenes_of(pending))):
        yield sample.key, img.cpu(), sample.meta


def coco_annotations(samples: list[tuple[str, dict[str, Any]]], classes: Sequence[str]) -> dict[str, Any]:
    """COCO detection JSON for (file_name, sample json) pairs; category id = label + 1."""
    labels = sorted({int(v) for _, meta in samples for v in meta["labels"]})
    n_cats = max(len(classes), (labels[-1] + 1) if labels else 0)
    images, annotations = [], []
    for image_id, (file_name, meta) in enumerate(samples, start=1):
        images.append({"id": image_id, "file_name": file_name, "width": meta["width"], "height": meta["height"]})
        for (x0, y0, x1, y1), label in zip(meta["boxes"], meta["labels"]):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": classes[i] if i < len(classes) else str(i)} for i in range(n_cats)]
    return {"images": images, "annotations": annotations, "categories": categories}


def main(argv: Sequence[str] | None = None) -> int:
    """Run rinr-decode; exit code 2 when a shard, record or label cannot be read or an image cannot be written."""
    from PIL import Image

    p = argparse.ArgumentParser(prog="rinr-decode", description=__doc__)
    p.add_argument("path", help="an output folder (with manifest.json) or a shard .tar file")
    p.add_argument("out", type=Path, help="folder for images/ and annotations.json")
    p.add_argument("--device", default="cpu", help="decode device: cpu, cuda or auto (default: %(default)s)")
    p.add_argument("--batch", type=int, default=16, help="records decoded together (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        _, manifest = find_shards([args.path])
        classes = manifest.get("classes") if manifest else None
        images = args.out / "images"
        images.mkdir(parents=True, exist_ok=True)
        root = images.resolve()
        written = []
        for key, img, meta in decoded_samples([args.path], args.device, max(1, args.batch), classes):
            file_name = f"{check_key(key)}.png"
            target = (images / file_name).resolve()
            # Keys were checked on read; this keeps OUT closed even to a symlink inside it pointing elsewhere.
            if not target.is_relative_to(root):
                raise FormatError(f"sample {key!r}: its image {target} would be written outside {images}")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy())).save(target)
            written.append((file_name, meta))
    except (FormatError, OSError) as exc:  # OSError: OUT cannot be written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    coco = coco_annotations(written, classes or [])
    (args.out / "annotations.json").write_text(json.dumps(coco, indent=1) + "\n")
    print(f"{len(written)} images and {len(coco['annotations'])} boxes written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
