"""Parse benchmark: bytes and one-core parse time of latent-grid records under each entropy coder.

Every grid record of a shard folder is written again with coder 3 ("ans", rinr-data <= 0.4: `constriction`'s range
coder, the context model in NumPy) and coder 4 ("rans", from 0.5: tabulated rANS, the context model compiled), the
same integers both ways; the table gives bytes per record and CPU ms per parse (`unpack`, one thread, best of
--repeat passes over all records) for each, measured in one process. This is the cost a loader worker pays per
record before any synthesis (docs/LOADING.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
import webdataset as wds

from rinr_data.codecs.grid import record as grid_record
from rinr_data.format import entropy

from .common import machine


def records(folder: Path) -> list[grid_record.GridRecord]:
    """The parsed grid records of every shard in `folder` (other members and codecs skipped)."""
    shards = sorted(str(p) for p in folder.glob("*.tar"))
    out = []
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        blob = sample.get("rinr")
        if blob is not None and blob[5] == grid_record.CODEC_ID:
            out.append(grid_record.unpack(blob))
    return out


def parse_ms(blobs: list[bytes], repeat: int) -> float:
    """Best-of-`repeat` CPU ms per `unpack` over `blobs`."""
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        for blob in blobs:
            grid_record.unpack(blob)
        best = min(best, (time.process_time() - t) * 1000 / len(blobs))
    return best


def main(argv: list[str] | None = None) -> int:
    """Repack the records with both coders and print bytes and parse time per record."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shards", type=Path, help="a shard folder of grid records (e.g. rinr-encode's output)")
    p.add_argument("--repeat", type=int, default=5, help="passes over the records; the best is reported")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    parsed = records(args.shards)
    if not parsed:
        p.error(f"no latent-grid records in {args.shards}")
    rows = {}
    for name in ("ans", "rans"):
        blobs = [grid_record.pack(dataclasses.replace(r, coder=entropy.CODER_IDS[name])) for r in parsed]
        rows[name] = (sum(map(len, blobs)) / len(blobs), parse_ms(blobs, args.repeat))
    (ans_bytes, ans_ms), (rans_bytes, rans_ms) = rows["ans"], rows["rans"]
    height, width = parsed[0].height, parsed[0].width
    print(
        f"Parse benchmark on {machine(torch.device('cpu'))}; {len(parsed)} grid records of {args.shards} "
        f"({width}x{height})\n"
    )
    print("| coder | bytes/record | parse ms/record (1 thread) |\n|---|---|---|")
    print(f"| 3 ans (rinr-data <= 0.4) | {ans_bytes:,.0f} | {ans_ms:.2f} |")
    print(
        f"| 4 rans (0.5) | {rans_bytes:,.0f} ({rans_bytes / ans_bytes - 1:+.2%}) | "
        f"{rans_ms:.2f} ({ans_ms / rans_ms:.1f}x faster) |"
    )
    return 0
