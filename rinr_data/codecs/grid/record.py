"""Records of codec 2, "latent-grid": entropy-coded latent levels, a quantised synthesis MLP and the boxes.

Layout in docs/FORMAT.md. A record may name a scene record (flag bit 0): its latents are then added to the scene's
and it is rendered by the scene's synthesis, which it does not carry. Parsing checks every size against the blob
before allocating and raises FormatError naming what is wrong.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from ...core.frames import box_region
from ...errors import FormatError
from ...format import entropy
from ...format.container import (
    HEADER,
    LENGTH,
    Reader,
    check_box,
    check_decode_cost,
    check_frame,
    pack_header,
    read_header,
    seal,
)
from ...format.quantize import QuantizedTensor, qmax, quantize_tensor
from . import context as grid_context
from .context import LevelContext
from .model import GridShape, Layers

CODEC = "latent-grid"
CODEC_ID = 2  # the record header's codec id: part of the format, never renumber
FLAG_SCENE_REF = 1
FLAG_CONTEXT = 2  # latents coded under the checkerboard context model (grid_context); else one scale per region
FLAG_BOX_LEVELS = 4  # a box-levels byte follows the weight bits (GridShape.box_levels); absent means 0
FLAG_BOX_MARGIN = 8  # a box-margin byte follows (GridShape.box_margin, pixels); absent means 0
FLAGS = FLAG_SCENE_REF | FLAG_CONTEXT | FLAG_BOX_LEVELS | FLAG_BOX_MARGIN
MAX_LEVELS = 12
MAX_HIDDEN_LAYERS = 8
MAX_SCENE_ID = 64
ANS = entropy.CODER_IDS["ans"]  # constriction's Laplace models: records written by rinr-data <= 0.4
RANS = entropy.CODER_IDS["rans"]  # tabulated rANS (the compiled coder): what `pack` writes
_BOX = struct.Struct("<4f")
_LEVEL = struct.Struct("<eeH")  # Laplace scale in boxes, outside boxes (f16), largest |latent| (u16)
# With FLAG_CONTEXT: base scales [pass][region] (f16), largest |latent| (u16), mean weights and spreads (int8).
_LEVEL_CONTEXT = struct.Struct(f"<4eH{grid_context.WEIGHTS}b{grid_context.PASSES}b")
# The same row as a NumPy record, to read the whole table at once.
_CONTEXT_ROW = np.dtype(
    [
        ("scales", "<f2", (4,)),
        ("bound", "<u2"),
        ("weights", "i1", (grid_context.WEIGHTS,)),
        ("spreads", "i1", (grid_context.PASSES,)),
    ]
)
_TENSOR = struct.Struct("<ee")  # quantisation step, Laplace scale of the integers (f16)
_DELTA = struct.Struct("<e")  # Laplace scale of a tensor's integer differences to the scene's (f16)


@dataclass
class GridRecord:
    """Everything needed to decode one latent-grid frame (or a scene background, which is a frame without boxes)."""

    height: int
    width: int
    shape: GridShape
    weight_bits: int
    boxes: list[tuple[float, float, float, float]]
    latents: list[np.ndarray]  # integers [h_l, w_l] per level (a parsed record: the smallest type that holds them)
    synthesis: list[QuantizedTensor] | None  # weight0, bias0, ...; None when the record names a scene
    scene: str | None = None
    # Scene-referencing records: integer differences to the scene's synthesis, tensor by tensor (its steps apply).
    synthesis_delta: list[np.ndarray] | None = None
    # Per level, the context model its latents are coded with; None: one zero-mean scale per level and region.
    context: list[LevelContext] | None = None
    codec: str = field(default=CODEC)
    coder: int = RANS  # entropy coder id of the latent stream (ANS or RANS); a parsed record keeps the one it had

    def layers(self) -> Layers:
        """Dequantised synthesis as a stack of one (weight [1, in, out], bias [1, 1, out] per layer)."""
        if self.synthesis is None:
            raise ValueError("a scene-referencing record carries no synthesis; resolve it against its scene")
        return stacked_layers(self.shape, [self.synthesis])


def quantize_synthesis(layers: Layers, bits: int) -> list[QuantizedTensor]:
    """Per-tensor quantisation of one synthesis MLP (layers of a stack of one)."""
    return [quantize_tensor(t[0], bits) for pair in layers for t in pair]


def _box_rects(shape: GridShape, height: int, width: int, boxes: list) -> np.ndarray:
    """int32 [N, 4] (top, left, bottom, right): each box's pixel region grown by the grid's box margin, clipped."""
    # Box by box in Python: for the few boxes of a frame, NumPy's per-call cost is larger than the arithmetic.
    m = shape.box_margin
    rects = []
    for box in boxes:
        r = box_region(box, height, width)
        rects.append((max(r.top - m, 0), max(r.left - m, 0), min(r.bottom + m, height), min(r.right + m, width)))
    return np.array(rects, np.int32).reshape(-1, 4)


def _level_masks(shape: GridShape, height: int, width: int, boxes: list) -> list[np.ndarray]:
    """`model.level_masks` of the boxes' mask, as bool arrays, computed box by box.

    The union of boxes grown by the margin and pooled 2x2 per level is the union of each box's rectangle grown and
    halved (rounding outwards): a few slice assignments instead of a frame-sized mask and pooling per level, which
    cost more than the entropy decoding of a record. The compiled decoder paints the same masks from `_box_rects`.
    """
    masks = [np.zeros(size, np.bool_) for size in shape.level_sizes(height, width)]
    for top, left, bottom, right in _box_rects(shape, height, width, boxes).tolist():
        for mask in masks:
            mask[top:bottom, left:right] = True
            top, left, bottom, right = top // 2, left // 2, (bottom + 1) // 2, (right + 1) // 2
    return masks


def _coded(shape: GridShape, masks: list[np.ndarray]) -> list[np.ndarray | None]:
    """Per level, where latents are coded: box-only levels at box-touching latents (mask), the others everywhere."""
    return [m if lv < shape.box_levels else None for lv, m in enumerate(masks)]


def _latent_specs(
    masks: list[np.ndarray], coded: list[np.ndarray | None], scales: np.ndarray, bounds: list[int]
) -> list[tuple[np.ndarray, int]]:
    specs = []
    for lv, (m, where) in enumerate(zip(masks, coded)):
        per = np.where(m, scales[lv, 0], scales[lv, 1]).astype(np.float64)
        specs.append((per if where is None else per[where], bounds[lv]))
    return specs


def _scatter(values: np.ndarray, size: tuple[int, int], where: np.ndarray | None) -> np.ndarray:
    if where is None:
        return values.reshape(size)
    out = np.zeros(size, np.int32)
    out[where] = values
    return out


@dataclass
class _CodingPlan:
    """What follows a record's boxes: its tables, and the Laplace chunks of its one ANS stream in coding order."""

    tables: list[bytes]
    chunks: list[tuple]
    inside: list[np.ndarray | None]  # per chunk: which of its values lie in boxes (None: synthesis)


def _plan(record: GridRecord) -> _CodingPlan:
    """Tables and chunks of a record (raises ValueError for latents a box-only level cannot hold)."""
    shape = record.shape
    masks = _level_masks(shape, record.height, record.width, record.boxes)
    coded = _coded(shape, masks)
    for lv, (lat, where) in enumerate(zip(record.latents, coded)):
        if where is not None and np.any(lat[~where]):
            raise ValueError(
                f"level {lv} holds latents off the boxes, but the grid codes it only on boxes "
                f"(box_levels {shape.box_levels})"
            )
    bounds = [int(np.abs(lat).max(initial=0)) for lat in record.latents]
    tables: list[bytes] = []
    if record.context is None:
        scales = np.zeros((shape.levels, 2))
        for lv, (lat, m) in enumerate(zip(record.latents, masks)):
            scales[lv] = [entropy.laplace_scale(lat[m]), entropy.laplace_scale(lat[~m])]
            tables.append(_LEVEL.pack(*scales[lv], bounds[lv]))
        scales = scales.astype(np.float16).astype(np.float64)
        chunks = [
            (lat if where is None else lat[where], s, b)
            for lat, where, (s, b) in zip(record.latents, coded, _latent_specs(masks, coded, scales, bounds))
        ]
        inside: list[np.ndarray | None] = [m if where is None else m[where] for m, where in zip(masks, coded)]
    else:
        if len(record.context) != shape.levels:
            raise ValueError(f"record has {len(record.context)} level contexts for {shape.levels} levels")
        for ctx, bound in zip(record.context, bounds):
            tables.append(
                _LEVEL_CONTEXT.pack(*np.asarray(ctx.scales, np.float16).reshape(-1), bound, *ctx.weights, *ctx.spreads)
            )
        chunks = [
            (values, scales, bounds[lv], means)
            for lv, values, means, scales in grid_context.models(record.latents, masks, record.context, bounds, coded)
        ]
        inside = [
            masks[lv][rows, cols]
            for lv in reversed(range(shape.levels))
            for rows, cols in grid_context.pass_positions(masks[lv].shape, coded[lv])
        ]
    limit = qmax(record.weight_bits)
    if record.scene is None:
        for t in record.synthesis or []:
            lap = np.float16(entropy.laplace_scale(t.values))
            tables.append(_TENSOR.pack(t.scale, lap))
            chunks.append((t.values, np.full(len(t.values), float(lap)), limit))
            inside.append(None)
    else:
        for delta in record.synthesis_delta or []:
            lap = np.float16(entropy.laplace_scale(delta))
            tables.append(_DELTA.pack(lap))
            chunks.append((delta, np.full(len(delta), float(lap)), 2 * limit))
            inside.append(None)
    return _CodingPlan(tables, chunks, inside)


def pack(record: GridRecord) -> bytes:
    """Serialise a latent-grid record (deterministic)."""
    return _pack(record, _plan(record))


def _pack(record: GridRecord, plan: _CodingPlan) -> bytes:
    shape = record.shape
    flags = (
        (FLAG_SCENE_REF if record.scene is not None else 0)
        | (FLAG_CONTEXT if record.context is not None else 0)
        | (FLAG_BOX_LEVELS if shape.box_levels else 0)
        | (FLAG_BOX_MARGIN if shape.box_margin else 0)
    )
    parts = [
        pack_header(CODEC_ID, flags, record.height, record.width, 0.0, len(record.boxes), record.coder),
        struct.pack(f"<BB{len(shape.hidden)}BB", shape.levels, len(shape.hidden), *shape.hidden, record.weight_bits),
    ]
    if shape.box_levels:
        parts.append(struct.pack("<B", shape.box_levels))
    if shape.box_margin:
        parts.append(struct.pack("<B", shape.box_margin))
    if record.scene is not None:
        name = record.scene.encode("ascii")
        parts.append(struct.pack("<B", len(name)) + name)
    parts += [_BOX.pack(*b) for b in record.boxes]
    if record.coder not in (ANS, RANS):
        raise ValueError(f"latent-grid records are coded with coder {ANS} (ans) or {RANS} (rans), not {record.coder}")
    payload = (entropy.rans_compress if record.coder == RANS else entropy.laplace_compress)(plan.chunks)
    parts += [*plan.tables, LENGTH.pack(len(payload)), payload]
    return seal(b"".join(parts))


def byte_budget(record: GridRecord) -> dict[str, float]:
    """Where a record's bytes go: the model's code length of its latents in and outside its boxes and of its
    synthesis, and the rest of the packed record (header, boxes, tables, coder flush)."""
    plan = _plan(record)
    out = {"latents in boxes": 0.0, "latents outside boxes": 0.0, "synthesis": 0.0}
    for (values, scales, _bound, *mean), inside in zip(plan.chunks, plan.inside):
        bits = entropy.laplace_bits(
            torch.from_numpy(np.asarray(values, np.float64)),
            torch.from_numpy(scales),
            torch.from_numpy(mean[0]) if mean else 0.0,
        ).numpy()
        if inside is None:
            out["synthesis"] += bits.sum() / 8
        else:
            out["latents in boxes"] += bits[inside].sum() / 8
            out["latents outside boxes"] += bits[~inside].sum() / 8
    out["other"] = len(_pack(record, plan)) - sum(out.values())
    return out


def unpack(blob: bytes) -> GridRecord:
    """Parse and validate a latent-grid record (raises FormatError for anything malformed)."""
    head = read_header(blob)
    if head.codec_id != CODEC_ID:
        raise FormatError(f"codec id {head.codec_id} is not {CODEC_ID} ({CODEC})")
    body = Reader.checked_body(blob)
    h, w, n_boxes, flags = head.height, head.width, head.n_boxes, head.flags
    check_frame(h, w, n_boxes)
    if flags & ~FLAGS or head.w0 != 0.0 or head.coder not in (ANS, RANS):
        raise FormatError(
            f"latent-grid header has flags {flags}, w0 {head.w0}, coder {head.coder}; "
            f"expected flags <= {FLAGS}, w0 0, coder {ANS} (ans) or {RANS} (rans)"
        )
    reader = Reader(body, HEADER.size)
    levels, n_hidden = reader.unpack(struct.Struct("<BB"), "grid descriptor")
    if not (1 <= levels <= MAX_LEVELS and n_hidden <= MAX_HIDDEN_LAYERS):
        raise FormatError(f"grid of {levels} levels and {n_hidden} hidden layers out of bounds")
    hidden = tuple(reader.take(n_hidden, "hidden widths"))
    (bits,) = reader.unpack(struct.Struct("<B"), "weight bits")
    if 0 in hidden or not 2 <= bits <= 16:
        raise FormatError(f"synthesis hidden widths {hidden} / {bits} bits out of bounds")
    box_levels = reader.unpack(struct.Struct("<B"), "box levels")[0] if flags & FLAG_BOX_LEVELS else 0
    if flags & FLAG_BOX_LEVELS and not 0 < box_levels < levels:
        raise FormatError(f"box levels {box_levels} out of bounds for {levels} levels (1..{levels - 1})")
    box_margin = reader.unpack(struct.Struct("<B"), "box margin")[0] if flags & FLAG_BOX_MARGIN else 0
    if flags & FLAG_BOX_MARGIN and not box_margin:
        raise FormatError("box margin flag set with a margin of 0 pixels")
    shape = GridShape(levels, hidden, box_levels=box_levels, box_margin=box_margin)
    check_decode_cost(h * w * sum(fi * fo for fi, fo in shape.layer_dims()), lambda: f"a {w}x{h} grid frame ({shape})")
    scene = None
    if flags & FLAG_SCENE_REF:
        (length,) = reader.unpack(struct.Struct("<B"), "scene id length")
        raw = bytes(reader.take(length, "scene id"))
        if not 1 <= length <= MAX_SCENE_ID or not raw.isascii() or not raw.decode().isalnum():
            raise FormatError(f"scene id {raw!r} is not 1..{MAX_SCENE_ID} ASCII letters and digits")
        scene = raw.decode()
    # One array read per table: struct reads value by value cost more than decoding a small level.
    box_table = reader.take(_BOX.size * n_boxes, "box table")
    boxes = [tuple(b) for b in np.frombuffer(box_table, "<f4").reshape(n_boxes, 4).tolist()]
    for i, box in enumerate(boxes):
        check_box(i, box, h, w)
    sizes = shape.level_sizes(h, w)
    params = None
    if flags & FLAG_CONTEXT:
        # One array read for the whole table: building it value by value cost more than decoding a level.
        table = np.frombuffer(
            reader.take(_LEVEL_CONTEXT.size * levels, "latent context table"), _CONTEXT_ROW, count=levels
        )
        # Each field viewed once: a structured array's field access costs more than the level's row.
        half, weights, spreads = table["scales"], table["weights"], table["spreads"]
        scales = half.astype(np.float64)
        bounds = table["bound"].tolist()
        context = [LevelContext(s, w, p) for s, w, p in zip(half.reshape(levels, 2, 2), weights, spreads)]
        params = grid_context.table_parameters(weights, spreads, half)
    else:
        rows = [reader.unpack(_LEVEL, "latent level table") for _ in range(levels)]
        scales = np.asarray([r[:2] for r in rows], np.float64)
        bounds = [int(r[2]) for r in rows]
        context = None
    if not _positive_finite(scales):
        raise FormatError("latent level table holds a non-positive or non-finite scale")
    counts = [n for fi, fo in shape.layer_dims() for n in (fi * fo, fo)]
    limit = qmax(bits)
    if scene is None:
        raw = reader.take(_TENSOR.size * len(counts), "synthesis table")
        syn_table = np.frombuffer(raw, "<f2").reshape(len(counts), 2).astype(np.float64)
        bound = limit
    else:
        raw = reader.take(_DELTA.size * len(counts), "synthesis difference table")
        syn_table = np.ones((len(counts), 2))
        syn_table[:, 1] = np.frombuffer(raw, "<f2")
        bound = 2 * limit
    if not _positive_finite(syn_table):
        raise FormatError("synthesis table holds a non-positive or non-finite step or scale")
    (length,) = reader.unpack(LENGTH, "payload length")
    payload = bytes(reader.take(length, "payload"))
    if reader.pos != len(body):
        raise FormatError(f"record has {len(body) - reader.pos} unexpected trailing bytes")
    if not payload and any(bounds):
        # The ANS decoder pops symbols past the end of its words without complaint, so an emptied or forged payload
        # would decode to plausible latents; a writer that codes any non-zero latent always emits at least one word.
        raise FormatError(f"empty payload, but the level table declares latents up to {max(bounds)}")
    stream = entropy.RansReader(payload) if head.coder == RANS else entropy.LaplaceReader(payload)
    if isinstance(stream, entropy.RansReader) and context is not None:
        # The compiled decoder paints each level's box mask itself from the box regions.
        rects = _box_rects(shape, h, w, boxes)
        latents, peaks = stream.read_levels(sizes, rects, shape.box_levels, params, bounds)
    elif context is None:
        masks = _level_masks(shape, h, w, boxes)
        coded = _coded(shape, masks)
        latents = [
            _scatter(stream.read(s, b), size, where)
            for (s, b), size, where in zip(_latent_specs(masks, coded, scales, bounds), sizes, coded)
        ]
        peaks = [int(np.abs(lat).max(initial=0)) for lat in latents]
    else:
        masks = _level_masks(shape, h, w, boxes)
        latents, peaks = _read_context_latents(stream, sizes, masks, _coded(shape, masks), context, bounds)
    # One read for every synthesis tensor: the same models in the same order as a read per tensor, one call.
    flat = stream.read(np.repeat(syn_table[:, 1], counts), bound)
    tensors = [flat[end - n : end] for n, end in zip(counts, itertools.accumulate(counts))]
    stream.finish()
    # The writer stores each level's largest |latent|: a stream that does not reach it is not the record its tables
    # describe.
    for lv, (found, declared) in enumerate(zip(peaks, bounds)):
        if found != declared:
            raise FormatError(f"latent level {lv}: largest value {found}, but the level table declares {declared}")
    # The smallest integer type that holds each level (read_levels gives them so): a 384x288 frame's levels are 4x
    # smaller in int8 than in the float32 the synthesis reads, for every copy, stack and host-to-device transfer
    # until the render casts them.
    latents = [lat.astype(entropy.int_type(bound), copy=False) for lat, bound in zip(latents, bounds)]
    if scene is None:
        synthesis = [QuantizedTensor(s, step, bits) for s, step in zip(tensors, syn_table[:, 0].tolist())]
        return GridRecord(h, w, shape, bits, boxes, latents, synthesis, context=context, coder=head.coder)
    return GridRecord(h, w, shape, bits, boxes, latents, None, scene, tensors, context, coder=head.coder)


def _read_context_latents(
    stream: entropy.LaplaceReader,
    sizes: list[tuple[int, int]],
    masks: list[np.ndarray],
    coded: list[np.ndarray | None],
    contexts: list[LevelContext],
    bounds: list[int],
) -> tuple[list[np.ndarray], list[int]]:
    """Coder 3: latents decoded coarsest level first, anchors before the others, each pass's models from what is
    decoded (`context.pass_models`, the specification); and each level's largest |latent|."""
    latents: list[np.ndarray] = [np.zeros(0, np.int32)] * len(sizes)
    peaks = [0] * len(sizes)
    for lv in reversed(range(len(sizes))):
        coarser = latents[lv + 1] if lv + 1 < len(sizes) else None
        level = np.zeros(sizes[lv], np.int32)
        for first, (rows, cols) in zip((True, False), grid_context.pass_positions(sizes[lv], coded[lv])):
            means, scales = grid_context.pass_models(
                level, coarser, masks[lv], contexts[lv], bounds[lv], rows, cols, first
            )
            level[rows, cols] = stream.read(scales, bounds[lv], means)
        latents[lv] = level
        peaks[lv] = int(np.abs(level).max(initial=0))
    return latents, peaks


def _positive_finite(table: np.ndarray) -> bool:
    # Two reductions instead of four array tests: a NaN fails both comparisons.
    return bool(table.size == 0 or (table.min() > 0 and table.max() < np.inf))


def _compact(levels: list[np.ndarray]) -> list[torch.Tensor]:
    """Integer levels as tensors [1, h, w] of the smallest type that holds them (parsed records already are)."""
    return [stacked_levels([lat])[0] for lat in levels]


def stacked_levels(levels: Sequence[np.ndarray]) -> torch.Tensor:
    """One integer level of B frames as a tensor [B, 1, h, w] of the smallest type that holds it."""
    stacked = np.stack(levels)  # NumPy promotes frames compacted to different types
    if stacked.dtype.itemsize > 2:
        stacked = stacked.astype(entropy.int_type(int(np.abs(stacked).max(initial=0))))
    return torch.from_numpy(stacked)[:, None]


def stacked_layers(shape: GridShape, syntheses: Sequence[Sequence[QuantizedTensor]]) -> Layers:
    """Dequantised synthesis of B frames: (weight [B, in, out], bias [B, 1, out]) per layer, one product a tensor
    for all frames (per frame and tensor, NumPy's and torch's call costs were a loader's largest after the parse)."""
    n = len(syntheses)
    out = []
    for i, (fan_in, fan_out) in enumerate(shape.layer_dims()):
        weight = _dequantised([s[2 * i] for s in syntheses]).view(n, fan_in, fan_out)
        bias = _dequantised([s[2 * i + 1] for s in syntheses]).view(n, 1, fan_out)
        out.append((weight, bias))
    return out


def _dequantised(tensors: Sequence[QuantizedTensor]) -> torch.Tensor:
    """float32 [B, n]: each tensor's integers times its step (the same products as `QuantizedTensor.dequantize`)."""
    values = np.stack([t.values for t in tensors]).astype(np.float32)
    steps = np.array([t.scale for t in tensors], np.float32)[:, None]
    return torch.from_numpy(values * steps)


def resolve(record: GridRecord, scenes: dict[str, GridRecord] | None) -> tuple[list[torch.Tensor], Layers]:
    """Integer latents [1, h_l, w_l] per level (exact; the render casts them to float32) and synthesis layers of a
    record, its scene's added in."""
    latents, synthesis = resolved(record, scenes)
    return _compact(latents), stacked_layers(record.shape, [synthesis])


def resolved(
    record: GridRecord, scenes: Mapping[str, GridRecord] | None
) -> tuple[list[np.ndarray], list[QuantizedTensor]]:
    """Integer latents per level and the quantised synthesis of a record, its scene's added in."""
    if record.scene is None:
        if record.synthesis is None:
            raise ValueError("a record without a scene reference carries its synthesis")
        return record.latents, record.synthesis
    scene = (scenes or {}).get(record.scene)
    if scene is None:
        raise FormatError(
            f"record references scene {record.scene!r}, which was not given "
            f"(pass scenes={{'{record.scene}': scene_bytes}})"
        )
    # Box-only levels may differ: they only decide where each record carries latents, not how they are summed.
    if scene.scene is not None or (scene.height, scene.width, scene.shape.dense, scene.weight_bits) != (
        record.height,
        record.width,
        record.shape.dense,
        record.weight_bits,
    ):
        raise FormatError(
            f"scene {record.scene!r} ({scene.width}x{scene.height}, {scene.shape}, "
            f"{scene.weight_bits} bits) does not fit the record ({record.width}x{record.height}, "
            f"{record.shape}, {record.weight_bits} bits)"
        )
    sums = [b.astype(np.int32) + d for b, d in zip(scene.latents, record.latents)]
    return sums, merged_synthesis(scene, record).synthesis or []


def merged_synthesis(scene: GridRecord, record: GridRecord) -> GridRecord:
    """The scene with the record's synthesis differences applied (raises FormatError when one leaves the range)."""
    limit = qmax(scene.weight_bits)
    merged = []
    for base, delta in zip(scene.synthesis or [], record.synthesis_delta or []):
        values = base.values + delta
        if len(values) and int(np.abs(values).max()) > limit:
            raise FormatError(
                f"record's synthesis differences leave the {scene.weight_bits}-bit range of scene {record.scene!r}"
            )
        merged.append(QuantizedTensor(values.astype(np.int32), base.scale, base.bits))
    return GridRecord(scene.height, scene.width, scene.shape, scene.weight_bits, [], scene.latents, merged)
