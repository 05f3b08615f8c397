"""Grouped decode: the INRs of many records are grouped by shape, each group runs as one batched forward."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from . import record as record_format
from .devices import resolve_device
from .frames import box_region
from .quantize import QuantizedINR, stack_params
from .siren import SirenShape, render


def render_inrs(items: Sequence[tuple[QuantizedINR, float, tuple[int, int]]], device: torch.device,
                ) -> list[torch.Tensor]:
    """Evaluate (INR, w0, (h, w)) items grouped by (shape, w0): one stacked render per group; [h*w, 3] each."""
    groups: dict[tuple[SirenShape, float], list[int]] = defaultdict(list)
    for i, (inr, w0, _) in enumerate(items):
        groups[(inr.shape, w0)].append(i)
    out: list[torch.Tensor | None] = [None] * len(items)
    for (_, w0), members in groups.items():
        params = stack_params([items[i][0] for i in members], device)
        for i, rendered in zip(members, render(params, [items[i][2] for i in members], w0)):
            out[i] = rendered
    return out  # type: ignore[return-value]


def backgrounds(records: Sequence[record_format.Record], device: torch.device) -> list[torch.Tensor]:
    """Float [3, H, W] background reconstructions in [0, 1] (what object residuals are measured against)."""
    rendered = render_inrs([(r.background, r.w0, (r.height, r.width)) for r in records], device)
    return [x.clamp(0, 1).T.reshape(3, r.height, r.width) for x, r in zip(rendered, records)]


def decode_records(records: Sequence[record_format.Record], device: str | torch.device = "cpu") -> list[torch.Tensor]:
    """Decode parsed records to uint8 [3, H, W] images on `device`, grouping all their INRs by shape."""
    dev = resolve_device(device)
    items, owners = [], []
    for ri, rec in enumerate(records):
        items.append((rec.background, rec.w0, (rec.height, rec.width)))
        owners.append((ri, -1))
        for oi, obj in enumerate(rec.objects):
            reg = box_region(obj.box, rec.height, rec.width)
            items.append((obj.inr, rec.w0, (reg.height, reg.width)))
            owners.append((ri, oi))
    rendered = render_inrs(items, dev)
    bgs: dict[int, torch.Tensor] = {}
    for (ri, oi), x in zip(owners, rendered):
        if oi < 0:
            rec = records[ri]
            bgs[ri] = x.clamp(0, 1).T.reshape(3, rec.height, rec.width)
    canvases = {ri: bg.clone() for ri, bg in bgs.items()}
    # Boxes are pasted in record order, so where boxes overlap the later one wins, as at encode time.
    for (ri, oi), x in zip(owners, rendered):
        if oi < 0:
            continue
        rec, obj = records[ri], records[ri].objects[oi]
        reg = box_region(obj.box, rec.height, rec.width)
        crop = bgs[ri][:, reg.top:reg.bottom, reg.left:reg.right]
        residual = x.T.reshape(3, reg.height, reg.width)
        canvases[ri][:, reg.top:reg.bottom, reg.left:reg.right] = (crop + obj.q * residual).clamp(0, 1)
    return [to_uint8(canvases[ri]) for ri in range(len(records))]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Float image in [0, 1] to uint8 with round-half-even, the same on every device."""
    return torch.round(image.clamp(0, 1) * 255).to(torch.uint8)


def decode_batch(blobs: Sequence[bytes], device: str | torch.device = "cpu") -> list[torch.Tensor]:
    """Decode many records at once: one batched forward per INR shape and layer, then compositing."""
    return decode_records([record_format.unpack(b) for b in blobs], device)


def decode(blob: bytes, device: str | torch.device = "cpu") -> torch.Tensor:
    """Decode one record to a uint8 [3, H, W] image."""
    return decode_batch([blob], device)[0]
