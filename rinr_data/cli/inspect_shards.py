"""rinr-inspect PATH...: summarise shards (sizes, PSNR, INR shapes, classes); --verify decodes and checks them."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import FormatError
from ..shards import check_labels, find_shards, image_member, sample_json, sha256_file


@dataclass
class Summary:
    """Everything rinr-inspect reports."""

    shards: int = 0
    samples: int = 0
    shard_bytes: int = 0
    image_bytes: list[int] = field(default_factory=list)
    object_psnr: list[float] = field(default_factory=list)
    background_psnr: list[float] = field(default_factory=list)
    codecs: Counter = field(default_factory=Counter)
    background_shapes: Counter = field(default_factory=Counter)
    object_shapes: Counter = field(default_factory=Counter)
    boxes_per_class: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    decoded: int = 0
    grid_budget: Counter = field(default_factory=Counter)  # summed grid_record.byte_budget of the grid records
    grid_records: int = 0

    def fail(self, shard: str, key: str | None, message: str) -> None:
        """Record a verification failure naming the shard and sample."""
        self.failures.append(f"{shard}" + (f" sample {key}" if key else "") + f": {message}")


def _distribution(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return {"n": int(arr.size), "min": math.inf, "max": math.inf}
    p10, p50, p90 = np.percentile(finite, [10, 50, 90])
    return {
        "n": int(arr.size),
        "min": float(arr.min()),
        "p10": float(p10),
        "median": float(p50),
        "p90": float(p90),
        "max": float(arr.max()),
        "mean": float(finite.mean()),
    }


def _check(summary: Summary, shard: str, parsed: Any) -> None:
    """Count the models and, where the codec reports them, the bytes of a parsed member."""
    from .. import codecs

    codec = codecs.get(parsed.codec)
    info = codec.describe(parsed.payload)
    if info.model is not None:
        summary.background_shapes[info.model] += 1
    summary.object_shapes.update(info.objects)
    if hasattr(codec, "byte_budget"):
        summary.grid_budget.update(codec.byte_budget(parsed.payload))
        summary.grid_records += 1


def _decode_group(summary: Summary, shard: str, group: list[Any], device: str) -> None:
    """Decode parsed samples together; on failure decode one by one to name the bad sample."""
    from ..decode import decode_records
    from ..pipeline.samples import scenes_of

    try:
        images = decode_records([s.payload for s in group], device, scenes_of(group))
    except Exception:  # noqa: BLE001 - isolate the failing record below
        images = []
        for sample in group:
            try:
                images.append(decode_records([sample.payload], device, scenes_of([sample]))[0])
            except Exception as exc:  # noqa: BLE001
                summary.fail(shard, sample.key, f"decode failed: {type(exc).__name__}: {exc}")
                images.append(None)
    for sample, img in zip(group, images):
        if img is None:
            continue
        meta = sample.meta
        if tuple(img.shape) != (3, meta["height"], meta["width"]):
            summary.fail(
                shard, sample.key, f"decoded to {tuple(img.shape)}, json says {meta['height']}x{meta['width']}"
            )
        else:
            summary.decoded += 1


def inspect(
    paths: Sequence[str | Path], verify: bool = False, device: str = "cpu", batch: int = 16
) -> tuple[Summary, dict[str, Any] | None]:
    """Read every sample of the shards; with verify also decode every image and check shard checksums."""
    from ..pipeline.samples import local_shard, parse_sample

    shard_paths, manifest = find_shards(paths)
    summary = Summary()
    listed = {s["name"]: s for s in manifest["shards"]} if manifest else {}
    classes = manifest.get("classes") if manifest else None
    for path in shard_paths:
        name = path.name
        if not path.is_file():
            summary.fail(name, None, "listed in the manifest but missing")
            continue
        summary.shards += 1
        summary.shard_bytes += path.stat().st_size
        entry = listed.get(name)
        if verify and entry is not None and sha256_file(path) != entry["sha256"]:
            summary.fail(
                name,
                None,
                f"sha256 {sha256_file(path)[:16]}... does not match the manifest's {entry['sha256'][:16]}...",
            )
        count, pending = 0, []
        try:
            for sample in local_shard(path):  # whole shard: scene records may ride on any of its samples
                count += 1
                key = sample["__key__"]
                try:
                    meta = sample_json(sample)
                    codec, data = image_member(sample)
                    check_labels(meta["labels"], classes)
                except FormatError as exc:
                    summary.fail(name, key, str(exc))
                    continue
                summary.samples += 1
                summary.codecs[codec] += 1
                summary.image_bytes.append(len(data))
                summary.sizes[f"{meta['width']}x{meta['height']}"] += 1
                for v, out in (
                    (meta["object_psnr"], summary.object_psnr),
                    (meta["background_psnr"], summary.background_psnr),
                ):
                    if v is not None:
                        out.append(float(v))
                summary.boxes_per_class.update(int(v) for v in meta["labels"])
                try:
                    parsed = parse_sample(sample)
                except FormatError as exc:
                    summary.fail(name, key, str(exc))
                    continue
                _check(summary, name, parsed)
                if verify:
                    pending.append(parsed)
                    if len(pending) >= batch:
                        _decode_group(summary, name, pending, device)
                        pending = []
        except FormatError as exc:
            summary.fail(name, None, str(exc))
        if pending:
            _decode_group(summary, name, pending, device)
        if verify and entry is not None and entry["samples"] != count:
            summary.fail(name, None, f"holds {count} samples, the manifest says {entry['samples']}")
    return summary, manifest


def report(summary: Summary, manifest: dict[str, Any] | None, verify: bool) -> dict[str, Any]:
    """The summary as a JSON-able dict (what --json prints)."""
    classes = manifest.get("classes", []) if manifest else []

    def name(i):
        return classes[i] if 0 <= i < len(classes) else str(i)

    out = {
        "shards": summary.shards,
        "samples": summary.samples,
        "skipped_at_encode": len(manifest.get("skipped", [])) if manifest else None,
        "codecs": dict(summary.codecs),
        "shard_bytes": summary.shard_bytes,
        "bytes_per_sample": summary.shard_bytes / summary.samples if summary.samples else None,
        "image_bytes": _distribution([float(b) for b in summary.image_bytes]),
        "image_sizes": dict(summary.sizes),
        "object_psnr": _distribution(summary.object_psnr),
        "background_psnr": _distribution(summary.background_psnr),
        "inr_shapes": {"background": dict(summary.background_shapes), "objects": dict(summary.object_shapes)},
        "classes": {name(i): n for i, n in sorted(summary.boxes_per_class.items())},
        "grid_bytes_per_record": (
            {k: v / summary.grid_records for k, v in summary.grid_budget.items()} if summary.grid_records else None
        ),
    }
    if verify:
        out["verify"] = {"ok": not summary.failures, "decoded": summary.decoded, "failures": summary.failures}
    return out


def _fmt_dist(d: dict[str, float] | None, unit: str, digits: int = 2) -> str:
    if d is None:
        return "-"
    keys = [k for k in ("min", "p10", "median", "p90", "max", "mean") if k in d]
    return " / ".join(f"{k} {d[k]:.{digits}f}" for k in keys) + f" {unit} (n={d['n']})"


def print_report(out: dict[str, Any]) -> None:
    """Human-readable report."""
    print(
        f"shards: {out['shards']}   samples: {out['samples']}"
        + (f"   skipped at encode: {out['skipped_at_encode']}" if out["skipped_at_encode"] is not None else "")
        + f"   codec: {', '.join(f'{k} ({v})' for k, v in out['codecs'].items()) or '-'}"
    )
    bps = out["bytes_per_sample"]
    print(f"bytes: {out['shard_bytes']} in shards, {bps:.0f} per sample" if bps else f"bytes: {out['shard_bytes']}")
    print(f"image member bytes: {_fmt_dist(out['image_bytes'], 'B', 0)}")
    print(f"image sizes: {', '.join(f'{k} ({v})' for k, v in out['image_sizes'].items()) or '-'}")
    print(f"object PSNR: {_fmt_dist(out['object_psnr'], 'dB')}")
    print(f"background PSNR: {_fmt_dist(out['background_psnr'], 'dB')}")
    shapes = out["inr_shapes"]
    if shapes["background"]:
        print(
            "INR shapes (SIREN width x depth, or grid): background "
            + ", ".join(f"{k}: {v}" for k, v in sorted(shapes["background"].items()))
            + "; objects "
            + (", ".join(f"{k}: {v}" for k, v in sorted(shapes["objects"].items())) or "none")
        )
    if out["grid_bytes_per_record"]:
        budget = out["grid_bytes_per_record"]
        total = sum(budget.values())
        print(
            "grid record bytes (mean, by the coding models): "
            + ", ".join(f"{k} {v:,.0f} ({100 * v / total:.0f}%)" for k, v in budget.items())
        )
    print(f"boxes per class: {', '.join(f'{k} ({v})' for k, v in out['classes'].items()) or 'none'}")
    if "verify" in out:
        v = out["verify"]
        if v["ok"]:
            print(f"verify: OK, {v['decoded']} images decoded, shard checksums and counts match the manifest")
        else:
            print(f"verify: FAILED ({len(v['failures'])} problem(s))")
            for f in v["failures"]:
                print(f"  FAIL {f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run rinr-inspect; exit code 1 when --verify finds a problem, 2 when the paths cannot be read."""
    p = argparse.ArgumentParser(prog="rinr-inspect", description=__doc__)
    p.add_argument("paths", nargs="+", help="an output folder (with manifest.json) or shard .tar files")
    p.add_argument(
        "--verify",
        action="store_true",
        help="decode every image and check each shard's sha256 and sample count against the manifest",
    )
    p.add_argument("--device", default="cpu", help="decode device: cpu, cuda or auto (default: %(default)s)")
    p.add_argument("--batch", type=int, default=16, help="records decoded together (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    try:
        summary, manifest = inspect(args.paths, args.verify, args.device, max(1, args.batch))
    except FormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = report(summary, manifest, args.verify)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print_report(out)
    for f in summary.failures if not args.verify else []:
        print(f"problem: {f}", file=sys.stderr)
    if summary.failures and args.verify:
        print(f"verify failed: {summary.failures[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
