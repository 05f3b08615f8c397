"""The tabulated rANS coder (coder id 4): tables, round trips, the compiled context model, hostile streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rinr_data import FormatError
from rinr_data.codecs.grid import context as grid_context
from rinr_data.codecs.grid import record as grid_record
from rinr_data.codecs.grid.context import LevelContext
from rinr_data.codecs.grid.model import GridShape
from rinr_data.format import entropy, rans_tables


def test_the_compiled_tables_are_the_generators_output():
    header = Path(rans_tables.__file__).with_name("_rans_tables.h").read_text()
    assert header == rans_tables.header()


def test_every_table_is_a_distribution_over_all_its_symbols():
    for row in rans_tables.cumulative():
        for cum in row:
            assert cum[0] == 0 and cum[-1] == 2**rans_tables.PREC
            assert all(b > a for a, b in zip(cum, cum[1:]))  # every offset and the escape stay codable


def _laplace_chunk(rng: np.random.Generator, n: int, scale: float, bound: int, with_means: bool) -> tuple:
    means = rng.uniform(-bound / 2, bound / 2, n) if with_means else np.zeros(n)
    values = np.clip(np.round(means + rng.laplace(0, scale, n)), -bound, bound).astype(np.int32)
    scales = np.full(n, scale) * rng.uniform(0.5, 2.0, n)
    return (values, scales, bound, means) if with_means else (values, scales, bound)


@pytest.mark.parametrize("scale", [0.004, 0.05, 0.6, 3.9, 4.0, 37.0, 900.0])
@pytest.mark.parametrize("with_means", [False, True])
def test_chunks_round_trip_at_every_scale(scale, with_means):
    rng = np.random.default_rng(int(scale * 1000) + with_means)
    chunks = [_laplace_chunk(rng, n, scale, bound, with_means) for n, bound in ((500, 40), (0, 3), (77, 65534))]
    chunks.append((np.zeros(9, np.int32), np.ones(9), 0))  # a bound of 0: nothing coded, zeros read back
    reader = entropy.RansReader(entropy.rans_compress(chunks))
    for values, scales, bound, *means in chunks:
        got = reader.read(scales, bound, means[0] if means else None)
        np.testing.assert_array_equal(got, values)
    reader.finish()


def test_values_far_outside_every_table_escape_and_come_back():
    values = np.array([60000, -60000, 25, -25, 24, -24, 0, 65534], np.int32)
    scales = np.full(len(values), 0.05)
    reader = entropy.RansReader(entropy.rans_compress([(values, scales, 65534)]))
    np.testing.assert_array_equal(reader.read(scales, 65534), values)
    reader.finish()


def test_an_empty_stream_holds_no_symbols():
    assert entropy.rans_compress([]) == b""
    reader = entropy.RansReader(b"")
    reader.finish()
    with pytest.raises(FormatError, match="stream ends"):
        reader.read(np.ones(3), 5)


@pytest.mark.parametrize("scale", [0.3, 1.3, 6.0])
def test_the_tables_cost_under_one_percent_over_exact_laplace_models(scale):
    rng = np.random.default_rng(3)
    chunk = _laplace_chunk(rng, 20000, scale, 200, with_means=True)
    exact = len(entropy.laplace_compress([chunk]))
    tabulated = len(entropy.rans_compress([chunk]))
    assert tabulated <= exact * 1.01, (exact, tabulated)


def _random_level(
    rng: np.random.Generator,
    shape: tuple[int, int],
    coarser: np.ndarray | None,
    mask: np.ndarray,
    box_only: bool,
    wide: bool,
):
    """A level, where it is coded, its context and bound: coded values drawn from the context model (`wide`: values
    and scales past the tables' top scale, so the decoder's raw low bits and int16 levels are used)."""
    ctx = LevelContext(
        rng.uniform(0.05, 300 if wide else 3, (2, 2)).astype(np.float16),
        rng.integers(-127, 128, grid_context.WEIGHTS).astype(np.int8),
        rng.integers(-40, 128, grid_context.PASSES).astype(np.int8),
    )
    coded = mask if box_only else None
    level = np.zeros(shape, np.int32)
    bound = int(rng.integers(200, 3000)) if wide else int(rng.integers(1, 30))
    for first, (rows, cols) in zip((True, False), grid_context.pass_positions(shape, coded)):
        mean, scale = grid_context.pass_models(level, coarser, mask, ctx, bound, rows, cols, first)
        level[rows, cols] = np.clip(np.round(mean + rng.laplace(0, scale)), -bound, bound)
    bound = int(np.abs(level).max(initial=0))
    return level, coded, ctx, bound


def _pyramid(seed: int) -> tuple[bytes, tuple, list[np.ndarray]]:
    """A random 4-level pyramid coded by the specification (`grid_context.models`): its stream, the decoder's
    `read_levels` arguments and the levels. Box-only levels, box margins, missing coarser levels and (odd seeds)
    values past the tables' top scale included."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    shape = GridShape(levels=4, box_levels=int(rng.integers(0, 3)), box_margin=int(rng.integers(0, 4)))
    boxes = []
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = rng.uniform(0, w - 0.5), rng.uniform(0, h - 0.5)
        boxes.append((x0, y0, rng.uniform(x0 + 0.1, w), rng.uniform(y0 + 0.1, h)))
    sizes = shape.level_sizes(h, w)
    masks = grid_record._level_masks(shape, h, w, boxes)
    levels, coded, contexts, bounds = [None] * 4, [None] * 4, [None] * 4, [0] * 4
    for lv in reversed(range(4)):
        coarser = levels[lv + 1] if lv + 1 < 4 else None
        levels[lv], coded[lv], contexts[lv], bounds[lv] = _random_level(
            rng, sizes[lv], coarser, masks[lv], lv < shape.box_levels, wide=seed % 2 == 1
        )
    chunks = [(v, s, bounds[lv], m) for lv, v, m, s in grid_context.models(levels, masks, contexts, bounds, coded)]
    params = grid_context.table_parameters(
        np.stack([c.weights for c in contexts]),
        np.stack([c.spreads for c in contexts]),
        np.stack([c.scales.reshape(-1) for c in contexts]),
    )
    rects = grid_record._box_rects(shape, h, w, boxes)
    return entropy.rans_compress(chunks), (sizes, rects, shape.box_levels, params, bounds), levels


@pytest.mark.parametrize("seed", range(8))
def test_the_compiled_context_model_decodes_what_the_specification_encodes(seed):
    """The compiled decoder, which paints the box masks from the box regions and evaluates the same means and scales
    itself, reads back exactly what the NumPy specification coded."""
    data, args, levels = _pyramid(seed)
    reader = entropy.RansReader(data)
    got, peaks = reader.read_levels(*args)
    bounds = args[-1]
    for lv in range(4):
        np.testing.assert_array_equal(got[lv], levels[lv])
        assert got[lv].dtype == (np.int8 if bounds[lv] <= 127 else np.int16)
        assert peaks[lv] == int(np.abs(levels[lv]).max(initial=0))
    reader.finish()


@pytest.mark.parametrize("damage", ["truncated", "bound", "scale"])
def test_the_level_decoder_refuses_a_stream_its_tables_do_not_describe(damage):
    """A stream cut short, a level past its declared bound and a non-finite base scale are errors of the call (the
    decoder checks them once a run of values, not per value)."""
    for seed in range(20):
        data, (sizes, rects, box_levels, params, bounds), levels = _pyramid(seed)
        if len(data) >= 8 and bounds[0] > 1 and np.abs(levels[0]).sum() > 10:
            break
    if damage == "truncated":
        data, message = data[: len(data) // 2 & ~1], "ends before"
    elif damage == "bound":
        bounds, message = [bounds[0] - 1, *bounds[1:]], "bound"
    else:
        params, message = params.copy(), "non-finite"
        params[:, 8:] = np.inf
    with pytest.raises(FormatError, match=message):
        entropy.RansReader(data).read_levels(sizes, rects, box_levels, params, bounds)


def test_the_level_decoder_refuses_parameters_off_the_stored_grid():
    """Mean weights and spreads are int8 multiples of 1/64 in every record; anything else is a caller's error."""
    reader = entropy.RansReader(entropy.rans_compress([(np.ones(4, np.int32), np.ones(4), 1)]))
    params = np.zeros(12)
    params[8:] = 1.0
    params[0] = 0.3  # not a multiple of 1/64
    with pytest.raises(FormatError, match="multiples of 1/64"):
        reader.read_levels([(2, 2)], np.zeros((0, 4), np.int32), 0, params[None], [1])


def _stream() -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    values, scales, bound = _laplace_chunk(rng, 400, 1.5, 30, with_means=False)
    return entropy.rans_compress([(values, scales, bound)]), values, scales


def test_truncated_padded_and_odd_streams_are_format_errors():
    data, values, scales = _stream()
    for bad in (data[:-2], data[:-1], data[:2], data + b"\x01\x00"):
        with pytest.raises(FormatError):
            reader = entropy.RansReader(bad)
            reader.read(scales, 30)
            reader.finish()


def test_damaged_streams_never_crash_and_never_exceed_the_bound():
    data, values, scales = _stream()
    rng = np.random.default_rng(5)
    outcomes = set()
    for _ in range(300):
        bad = bytearray(data)
        for pos in rng.integers(0, len(bad), int(rng.integers(1, 4))):
            bad[pos] ^= int(rng.integers(1, 256))
        try:
            reader = entropy.RansReader(bytes(bad))
            got = reader.read(scales, 30)
            reader.finish()
        except FormatError:
            outcomes.add("refused")
            continue
        assert np.abs(got).max() <= 30
        outcomes.add("decoded")
    assert "refused" in outcomes


def test_a_value_beyond_the_declared_bound_is_refused():
    values = np.array([0, 1, 9], np.int32)
    data = entropy.rans_compress([(values, np.ones(3), 9)])
    with pytest.raises(FormatError, match="bound"):
        entropy.RansReader(data).read(np.ones(3), 8)


@pytest.mark.parametrize(
    "table, message",
    [
        ([(2, 2, 0, 1, 1), (4, 4, 4, 1, 1)], "finest first"),
        ([(4, 4, 0, 1, 1), (1, 1, 16, 1, 1)], "less than half"),
        ([(4, 4, 0, 1, 1), (2, 2, 8, 1, 1)], "overlap"),
        ([(4, 4, 0, 2, 1)], "does not fit"),
        ([(4, 4, 0, 1, 300)], "does not fit"),
    ],
)
def test_the_level_decoder_refuses_a_level_table_that_does_not_fit_its_buffer(table, message):
    """The compiled decoder writes only inside the buffer it is given, at offsets and sizes it checks first."""
    _rans = entropy._compiled()
    params = np.zeros((len(table), 12))
    params[:, 8:] = 1.0
    state = np.array([1 << 16, 0, 0], np.uint32)
    with pytest.raises(ValueError, match=message):
        _rans.decode_levels(
            b"", state, np.zeros(24, np.uint8), np.array(table, np.int64), np.zeros((0, 4), np.int32), 0, params
        )
