"""Property tests (hypothesis, issue 22): records built from arbitrary small integers round-trip exactly through their
bytes, and damaged bytes of a valid record decode to nothing but a FormatError or an image of the declared size.

Records are built directly from integer tensors (as tests/test_grid.py and tests/test_record.py build their reference
records), never by fitting, so each example costs milliseconds. Examples are derandomised (the same ones every run,
so `make test` stays reproducible; the fuzzers of tests/test_fuzz.py are what explores) and not stored in a database.
"""

from __future__ import annotations

import struct
import zlib
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rinr_data as R
from rinr_data.codecs.grid import record as grid_record
from rinr_data.codecs.grid.context import LevelContext
from rinr_data.codecs.grid.model import GridShape, level_masks
from rinr_data.codecs.paper import record as paper_record
from rinr_data.codecs.paper.siren import SirenShape
from rinr_data.codecs.paper.weights import QuantizedINR
from rinr_data.core.frames import box_mask
from rinr_data.format import container
from rinr_data.format.quantize import QuantizedTensor, qmax

SETTINGS = dict(deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
# Damaged records may declare other frame sizes: the cap keeps each decode to milliseconds (the limit itself is
# tests/test_hostile_records.py's subject).
SMALL_FRAMES = 64 * 64

# f16-exact quantisation steps and scales: the record stores them as float16.
steps = st.integers(-10, 0).map(lambda e: 2.0**e)


@st.composite
def boxes(draw, height: int, width: int, max_boxes: int = 3) -> list[tuple[float, float, float, float]]:
    """Up to `max_boxes` positive-area boxes inside the frame, on a quarter-pixel grid (exact in float32)."""
    out = []
    for _ in range(draw(st.integers(0, max_boxes))):
        x0, x1 = sorted(draw(st.lists(st.integers(0, 4 * width), min_size=2, max_size=2, unique=True)))
        y0, y1 = sorted(draw(st.lists(st.integers(0, 4 * height), min_size=2, max_size=2, unique=True)))
        out.append((x0 / 4, y0 / 4, x1 / 4, y1 / 4))
    return out


def int_array(draw, size: int | tuple[int, int], bound: int) -> np.ndarray:
    """int32 array of `size` with values in [-bound, bound]."""
    return draw(hnp.arrays(np.int32, size, elements=st.integers(-bound, bound)))


@st.composite
def grid_records(draw) -> grid_record.GridRecord:
    """A small latent-grid record of any layout: box-only levels and margin, context model, scene reference."""
    height, width = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    levels = draw(st.integers(1, 3))
    shape = GridShape(
        levels=levels,
        hidden=tuple(draw(st.lists(st.integers(1, 6), max_size=2))),
        box_levels=draw(st.integers(0, levels - 1)),
        box_margin=draw(st.integers(0, 2)),
    )
    bits = draw(st.integers(2, 12))
    frame_boxes = draw(boxes(height, width))
    masks = level_masks(box_mask(np.asarray(frame_boxes, np.float64).reshape(-1, 4), height, width), shape)
    latents = []
    for lv, size in enumerate(shape.level_sizes(height, width)):
        lat = int_array(draw, size, draw(st.sampled_from([0, 1, 3, 40, 300])))
        if lv < shape.box_levels:  # box-only levels hold latents only where they touch a box
            lat = lat * masks[lv].numpy()
        latents.append(lat.astype(np.int32))
    context = None
    if draw(st.booleans()):
        context = [
            LevelContext(
                np.asarray(
                    draw(st.lists(st.sampled_from([0.25, 0.5, 1.5, 3.0]), min_size=4, max_size=4)), np.float16
                ).reshape(2, 2),
                int_array(draw, 6, 64).astype(np.int8),
                draw(hnp.arrays(np.int8, 2, elements=st.integers(0, 16))),
            )
            for _ in range(levels)
        ]
    counts = [n for fi, fo in shape.layer_dims() for n in (fi * fo, fo)]
    if draw(st.booleans()):
        scene = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=16))
        deltas = [int_array(draw, n, 2 * qmax(bits)) for n in counts]
        return grid_record.GridRecord(height, width, shape, bits, frame_boxes, latents, None, scene, deltas, context)
    synthesis = [QuantizedTensor(int_array(draw, n, qmax(bits)), draw(steps), bits) for n in counts]
    return grid_record.GridRecord(height, width, shape, bits, frame_boxes, latents, synthesis, context=context)


@st.composite
def paper_records(draw) -> paper_record.Record:
    """A small residual-SIREN record: background and 0-2 object INRs, any coder."""
    height, width = draw(st.integers(1, 20)), draw(st.integers(1, 20))

    def inr() -> QuantizedINR:
        shape = SirenShape(draw(st.integers(1, 6)), draw(st.integers(1, 3)))
        first, rest = draw(st.integers(2, 12)), draw(st.integers(2, 10))
        tensors = []
        for layer, (fi, fo) in enumerate(shape.layer_dims()):
            for n, bits in ((fi * fo, first if layer == 0 else rest), (fo, rest)):
                tensors.append(QuantizedTensor(int_array(draw, n, qmax(bits)), draw(steps), bits))
        return QuantizedINR(shape, tensors)

    objects = [
        paper_record.ObjectEntry(box, draw(st.integers(1, 16)) / 8, inr())
        for box in draw(boxes(height, width, max_boxes=2))
    ]
    w0 = float(draw(st.integers(1, 60)))
    return paper_record.Record(
        height, width, w0, inr(), objects, draw(st.sampled_from(["raw", "zstd", "brotli", "ans"]))
    )


def same_tensors(a: list[QuantizedTensor] | None, b: list[QuantizedTensor] | None) -> bool:
    """Equal integer tensors with equal steps and bit widths."""
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(
        np.array_equal(x.values, y.values) and x.scale == y.scale and x.bits == y.bits for x, y in zip(a, b)
    )


def same_arrays(a: list[np.ndarray] | None, b: list[np.ndarray] | None) -> bool:
    """Equal integer arrays, shapes included."""
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def same_grid(a: grid_record.GridRecord, b: grid_record.GridRecord) -> bool:
    """Every field of two grid records equal (the context parameters value by value)."""
    contexts = (a.context is None) == (b.context is None) and all(
        np.array_equal(np.asarray(x.scales, np.float16), np.asarray(y.scales, np.float16))
        and np.array_equal(x.weights, y.weights)
        and np.array_equal(x.spreads, y.spreads)
        for x, y in zip(a.context or [], b.context or [])
    )
    return (
        (a.height, a.width, a.shape, a.weight_bits, a.scene) == (b.height, b.width, b.shape, b.weight_bits, b.scene)
        and [tuple(v) for v in a.boxes] == [tuple(v) for v in b.boxes]
        and same_arrays(a.latents, b.latents)
        and same_tensors(a.synthesis, b.synthesis)
        and same_arrays(a.synthesis_delta, b.synthesis_delta)
        and contexts
    )


@settings(max_examples=60, **SETTINGS)
@given(record=grid_records())
def test_grid_records_round_trip_exactly(record):
    blob = R.pack_record(record)
    parsed = R.unpack_record(blob)
    assert isinstance(parsed, grid_record.GridRecord)
    assert same_grid(parsed, record)
    assert R.pack_record(parsed) == blob


@settings(max_examples=40, **SETTINGS)
@given(record=paper_records())
def test_paper_records_round_trip_exactly(record):
    blob = R.pack_record(record)
    parsed = R.unpack_record(blob)
    assert (parsed.height, parsed.width, parsed.w0, parsed.coder) == (
        record.height,
        record.width,
        record.w0,
        record.coder,
    )
    assert [(o.box, o.q) for o in parsed.objects] == [(o.box, o.q) for o in record.objects]
    for got, want in zip(parsed.inrs(), record.inrs(), strict=True):
        assert got.shape == want.shape and same_tensors(got.tensors, want.tensors)
    assert R.pack_record(parsed) == blob


def _refresh_crc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4])) if len(data) >= 4 else data


def decodes_cleanly(data: bytes) -> str:
    """ "error" for a FormatError, "ok" for an image of the size the (damaged) header declares; fails otherwise."""
    try:
        image = R.decode(data)
    except R.FormatError:
        return "error"
    head = container.read_header(data)
    assert tuple(image.shape) == (3, head.height, head.width)
    return "ok"


@st.composite
def damaged(draw, blob: bytes) -> tuple[bytes, bool]:
    """`blob` with a few bytes XORed, cut short, or both; and whether its checksum was then made valid again."""
    data = bytearray(blob)
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data) - 1))]
    refreshed = draw(st.booleans())
    return (_refresh_crc(bytes(data)) if refreshed else bytes(data)), refreshed


@st.composite
def records_and_damage(draw) -> tuple[bytes, bytes, bool]:
    blob = R.pack_record(draw(st.one_of(grid_records(), paper_records())))
    return (blob, *draw(damaged(blob)))


@settings(max_examples=150, **SETTINGS)
@given(case=records_and_damage())
def test_damaged_records_raise_format_error_or_decode_to_their_declared_size(case):
    blob, data, refreshed = case
    with mock.patch.object(container, "MAX_IMAGE_PIXELS", SMALL_FRAMES):
        outcome = decodes_cleanly(data)
    if data != blob and not refreshed:
        assert outcome == "error"  # the checksum catches any damage it was not recomputed over
