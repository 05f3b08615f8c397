"""Lossless coding of the quantised integer stream of a record; each coder is a (compress, decompress) pair."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import FormatError
from .quantize import qmax

# Coder ids are part of the record format (docs/FORMAT.md): never renumber.
CODER_IDS = {"raw": 0, "zstd": 1, "brotli": 2, "ans": 3, "rans": 4}
# Coders of whole weight streams (`compress`); "rans" codes latent-grid records only (`rans_compress`).
CODERS = ("raw", "zstd", "brotli", "ans")
CODER_NAMES = {v: k for k, v in CODER_IDS.items()}

Streams = Sequence[np.ndarray]  # int32 arrays, one per tensor


def _dtype(bits: int) -> np.dtype:
    # Tensors of up to 8 bits take one byte a value, wider ones two: byte coders see a regular layout.
    return np.dtype(np.int8 if bits <= 8 else "<i2")


def int_type(bound: int) -> np.dtype:
    """The smallest integer type that holds every value in [-bound, bound] (int8, int16 or int32)."""
    return np.dtype(np.int8 if bound <= 127 else np.int16 if bound <= 32767 else np.int32)


def _raw_size(counts: Sequence[int], bits: Sequence[int]) -> int:
    return sum(n * _dtype(b).itemsize for n, b in zip(counts, bits))


def _pack_ints(streams: Streams, bits: Sequence[int]) -> bytes:
    return b"".join(np.asarray(s).astype(_dtype(b)).tobytes() for s, b in zip(streams, bits))


def _unpack_ints(data: bytes, counts: Sequence[int], bits: Sequence[int]) -> list[np.ndarray]:
    if len(data) != _raw_size(counts, bits):
        raise FormatError(f"weight stream holds {len(data)} bytes, expected {_raw_size(counts, bits)}")
    out, pos = [], 0
    for n, b in zip(counts, bits):
        dt = _dtype(b)
        out.append(np.frombuffer(data, dt, n, pos).astype(np.int32))
        pos += n * dt.itemsize
    return out


def _zstd_compress(raw: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=19, write_content_size=True).compress(raw)


def _zstd_decompress(data: bytes, expected: int) -> bytes:
    import zstandard

    # decompress() allocates what the frame header declares, whatever max_output_size says: read at most one byte past
    # the expected size from a stream instead, so a forged header cannot allocate without bound.
    try:
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            parts, size = [], 0
            while size <= expected and (chunk := reader.read(expected + 1 - size)):
                parts.append(chunk)
                size += len(chunk)
    except zstandard.ZstdError as exc:
        raise FormatError(f"zstd weight stream is corrupt: {exc}") from None
    if size != expected:
        more = "+" if size > expected else ""
        raise FormatError(f"zstd weight stream holds {size}{more} bytes, expected {expected}")
    return b"".join(parts)


def _brotli_compress(raw: bytes) -> bytes:
    import brotli

    return brotli.compress(raw, quality=11, lgwin=16)


def _brotli_decompress(data: bytes, expected: int) -> bytes:
    import brotli

    try:
        # Bounded output: a crafted record must not inflate into gigabytes.
        decoder = brotli.Decompressor()
        out = decoder.process(data, output_buffer_limit=expected + 1)
        finished = decoder.is_finished()
    except brotli.error as exc:
        raise FormatError(f"brotli weight stream is corrupt: {exc}") from None
    if not finished or len(out) != expected:
        raise FormatError(f"brotli weight stream does not hold the expected {expected} bytes")
    return out


def _ans_model(bits: Sequence[int]):
    import constriction

    # One model over the widest range for the whole stream: a single coder call instead of one per tensor
    # (10x faster to decode); the leaked probability of the unused outer symbols costs well under a byte.
    bound = qmax(max(bits))
    return constriction.stream.model.QuantizedGaussian(-bound, bound)


def _symbol_stds(counts: Sequence[int], stds: np.ndarray) -> np.ndarray:
    return np.repeat(stds.astype(np.float64), counts)


def _ans_compress(streams: Streams, bits: Sequence[int]) -> bytes:
    """Range-code the tensors with zero-mean Gaussians whose float16 stds travel in front of the words."""
    import constriction

    stds = np.asarray([max(float(np.std(s)) if len(s) else 1.0, 0.05) for s in streams], np.float16)
    counts = [len(s) for s in streams]
    coder = constriction.stream.stack.AnsCoder()
    symbols = np.concatenate([np.asarray(s, np.int32) for s in streams]) if streams else np.zeros(0, np.int32)
    if len(symbols):
        coder.encode_reverse(symbols, _ans_model(bits), np.zeros(len(symbols)), _symbol_stds(counts, stds))
    return stds.astype("<f2").tobytes() + coder.get_compressed().astype("<u4").tobytes()


def _ans_decompress(data: bytes, counts: Sequence[int], bits: Sequence[int]) -> list[np.ndarray]:
    import constriction

    head = 2 * len(counts)
    if len(data) < head or (len(data) - head) % 4:
        raise FormatError(f"ans weight stream has {len(data)} bytes, not a std table plus 32-bit words")
    stds = np.frombuffer(data, "<f2", len(counts)).astype(np.float64)
    if not np.all(np.isfinite(stds)) or np.any(stds <= 0):
        raise FormatError("ans weight stream has a non-positive or non-finite std")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4", offset=head).astype(np.uint32))
    except ValueError as exc:  # e.g. a stream ending in a zero word, which no encoder writes
        raise FormatError(f"ans weight stream is corrupt: {exc}") from None
    total = int(sum(counts))
    try:
        flat = (
            np.asarray(coder.decode(_ans_model(bits), np.zeros(total), _symbol_stds(counts, stds)), np.int32)
            if total
            else np.zeros(0, np.int32)
        )
    except Exception as exc:  # constriction raises its own error types on exhausted or invalid words
        raise FormatError(f"ans weight stream is corrupt: {exc}") from None
    if not coder.is_empty():
        raise FormatError("ans weight stream has trailing data")
    return list(np.split(flat, np.cumsum(counts)[:-1])) if counts else []


def compress(streams: Streams, bits: Sequence[int], coder: str) -> bytes:
    """Losslessly code integer tensors (each within its `bits`) with the named coder."""
    if coder == "ans":
        return _ans_compress(streams, bits)
    raw = _pack_ints(streams, bits)
    byte_coders: dict[str, Callable[[bytes], bytes]] = {
        "raw": lambda b: b,
        "zstd": _zstd_compress,
        "brotli": _brotli_compress,
    }
    if coder not in byte_coders:
        raise ValueError(f"unknown entropy coder {coder!r}; valid: {', '.join(CODERS)}")
    return byte_coders[coder](raw)


def decompress(data: bytes, counts: Sequence[int], bits: Sequence[int], coder_id: int) -> list[np.ndarray]:
    """Inverse of `compress`: the integer tensors, checked against their counts and bit widths."""
    if coder_id not in CODER_NAMES or CODER_NAMES[coder_id] not in CODERS:
        raise FormatError(f"unknown weight-stream coder id {coder_id}; known: {sorted(CODER_IDS[c] for c in CODERS)}")
    name = CODER_NAMES[coder_id]
    if name == "ans":
        streams = _ans_decompress(data, counts, bits)
    else:
        expected = _raw_size(counts, bits)
        raw = {"raw": lambda d, e: d, "zstd": _zstd_decompress, "brotli": _brotli_decompress}[name](data, expected)
        streams = _unpack_ints(raw, counts, bits)
    for s, b in zip(streams, bits):
        qmax = 2 ** (b - 1) - 1
        if len(s) and int(np.abs(s).max()) > qmax:
            raise FormatError(f"weight value out of range for {b}-bit tensor")
    return streams


def coder_id(name: str) -> int:
    """Numeric id of a coder name, as stored in records."""
    if name not in CODERS:
        raise ValueError(f"unknown entropy coder {name!r}; valid: {', '.join(CODERS)}")
    return CODER_IDS[name]


# Laplace-coded chunks (latent-grid records): each chunk is integers in [-bound, bound], one Laplace scale (and,
# optionally, one mean) per integer. One ANS stack carries all chunks, pushed in reverse so the decoder pops them in
# order; `LaplaceReader` pops them one at a time, so a chunk's models may depend on the chunks decoded before it.
LaplaceChunk = tuple  # (values, per-value scales, bound) or (values, per-value scales, bound, per-value means)
MIN_LAPLACE_SCALE = 0.01


def laplace_compress(chunks: Sequence[LaplaceChunk]) -> bytes:
    """Range-code integer chunks, each under per-value Laplace models (zero-mean unless given) over [-bound, bound]."""
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    for values, scales, bound, *mean in reversed(chunks):
        values = np.asarray(values, np.int32).reshape(-1)
        if len(values) == 0 or bound == 0:
            continue
        means = np.asarray(mean[0], np.float64).reshape(-1) if mean else np.zeros(len(values))
        model = constriction.stream.model.QuantizedLaplace(-bound, bound)
        coder.encode_reverse(values, model, means, np.asarray(scales, np.float64).reshape(-1))
    return coder.get_compressed().astype("<u4").tobytes()


class LaplaceReader:
    """Pops the chunks of a `laplace_compress` stream in order; every failure is a FormatError."""

    def __init__(self, data: bytes) -> None:
        import constriction

        self._model = constriction.stream.model.QuantizedLaplace
        if len(data) % 4:
            raise FormatError(f"latent stream has {len(data)} bytes, not a whole number of 32-bit words")
        try:
            self._coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
        except ValueError as exc:  # e.g. a stream ending in a zero word, which no encoder writes
            raise FormatError(f"latent stream is corrupt: {exc}") from None

    def read(self, scales: np.ndarray, bound: int, means: np.ndarray | None = None) -> np.ndarray:
        """The next chunk: as many integers as `scales` has values; a bound of 0 means all zeros (nothing coded)."""
        scales = np.asarray(scales, np.float64).reshape(-1)
        if len(scales) == 0 or bound == 0:
            return np.zeros(len(scales), np.int32)
        means = np.zeros(len(scales)) if means is None else np.asarray(means, np.float64).reshape(-1)
        try:
            return np.asarray(self._coder.decode(self._model(-bound, bound), means, scales), np.int32)
        except Exception as exc:  # constriction raises its own error types on exhausted or invalid words
            raise FormatError(f"latent stream is corrupt: {exc}") from None

    def finish(self) -> None:
        """Check that every word of the stream was used."""
        if not self._coder.is_empty():
            raise FormatError("latent stream has trailing data")


def laplace_decompress(data: bytes, specs: Sequence[tuple[np.ndarray, int]]) -> list[np.ndarray]:
    """Inverse of `laplace_compress` for zero-mean chunks given each chunk's (per-value scales, bound)."""
    reader = LaplaceReader(data)
    out = [reader.read(scales, bound) for scales, bound in specs]
    reader.finish()
    return out


def laplace_bits(values: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Bits of integers (or noisy reals) under a Laplace of `mean`, `scale` integrated over the unit bin around them."""
    scale = scale.clamp_min(MIN_LAPLACE_SCALE)
    x = values - mean
    a = x.abs()
    # Written with exp of non-positive arguments only, so it stays accurate (and finite) far in the tail.
    far = torch.exp(-(a + 0.5) / scale)
    inner = 1 - 0.5 * torch.exp(-(0.5 - a).clamp_min(0) / scale) - 0.5 * far
    outer = 0.5 * (torch.exp(-(a - 0.5).clamp_min(0) / scale) - far)
    prob = torch.where(a < 0.5, inner, outer)
    return -torch.log2(prob.clamp_min(1e-12))


def laplace_scale(values: np.ndarray, floor: float = MIN_LAPLACE_SCALE) -> float:
    """The float16 Laplace scale that codes `values` in the fewest bits (searched, so encoder-side only)."""
    values = torch.from_numpy(np.abs(np.asarray(values, np.float64).reshape(-1)))
    if len(values) == 0:
        return 1.0
    best, best_bits = 1.0, math.inf
    for s in np.float16(np.geomspace(floor, max(4 * float(values.mean()), 2 * floor), 48)):
        s = max(float(s), floor)
        bits = float(laplace_bits(values, torch.tensor(s, dtype=torch.float64)).sum())
        if bits < best_bits:
            best, best_bits = s, bits
    return best


# Tabulated rANS (coder id 4, docs/FORMAT.md): the same chunks as `laplace_compress`, coded by the compiled coder in
# `_rans.c` against the fixed tables of `rans_tables`. Decoding costs a table lookup a value instead of a Laplace CDF
# evaluated per value, and the grid context model runs inside the same compiled loop (`RansReader.read_level`).
def _compiled() -> Any:
    """The compiled coder, or an ImportError that says how to build it."""
    try:
        from . import _rans
    except ImportError as exc:
        raise ImportError(
            "rinr_data's compiled entropy coder (rinr_data/format/_rans.c) is not built: install the package "
            "(`pip install -e .`, which needs a C compiler and the Python headers) or run "
            "`python setup.py build_ext --inplace` in a source checkout"
        ) from exc
    return _rans


def rans_compress(chunks: Sequence[LaplaceChunk]) -> bytes:
    """Code integer chunks (values, per-value scales, bound[, per-value means]) into one tabulated-rANS stream."""
    _rans = _compiled()
    values, means, scales = [], [], []
    for values_, scales_, bound, *mean in chunks:
        v = np.asarray(values_, np.int32).reshape(-1)
        if len(v) == 0 or bound == 0:
            continue  # a bound of 0 means all zeros: nothing to code
        values.append(v)
        scales.append(np.asarray(scales_, np.float64).reshape(-1))
        means.append(np.asarray(mean[0], np.float64).reshape(-1) if mean else np.zeros(len(v)))
    if not values:
        return b""
    return _rans.encode(*(np.ascontiguousarray(np.concatenate(a)) for a in (values, means, scales)))


class RansReader:
    """Pops the chunks of a `rans_compress` stream in order; every failure is a FormatError."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 2 or len(data) == 2:
            raise FormatError(f"latent stream has {len(data)} bytes, not a 32-bit state and 16-bit words")
        self._data = bytes(data)
        words = len(data) // 2
        x = (int.from_bytes(data[0:2], "little") << 16) | int.from_bytes(data[2:4], "little") if words else 1 << 16
        if x < 1 << 16:
            raise FormatError("latent stream is corrupt: its state is below the coder's range")
        # x, read position (in words), number of words: the compiled coder's state between calls.
        self._state = np.array([x, 2 if words else 0, words], np.uint32)

    def read(self, scales: np.ndarray, bound: int, means: np.ndarray | None = None) -> np.ndarray:
        """The next chunk: as many integers as `scales` has values; a bound of 0 means all zeros (nothing coded)."""
        _rans = _compiled()
        scales = np.ascontiguousarray(scales, np.float64).reshape(-1)
        out = np.zeros(len(scales), np.int32)
        if len(scales) == 0 or bound == 0:
            return out
        if means is not None:
            means = np.ascontiguousarray(means, np.float64).reshape(-1)
        self._call(_rans.decode, out, means, scales, int(bound))
        return out

    def read_levels(
        self,
        sizes: Sequence[tuple[int, int]],
        rects: np.ndarray,
        box_levels: int,
        params: np.ndarray,
        bounds: Sequence[int],
    ) -> tuple[list[np.ndarray], list[int]]:
        """A record's latent levels [h_l, w_l] (finest first; decoded coarsest first) under the checkerboard context
        model (`codecs.grid.context.pass_models`, evaluated in compiled code), each in the smallest integer type that
        holds its bound, and each level's largest |value|.

        rects: int32 [N, 4] box regions (top, left, bottom, right) at full resolution, grown by the box margin; level
        l's box mask is them halved l times, and levels below `box_levels` are coded only there. params: float64
        [L, 12] per level 6 mean weights, 2 spreads and base scales [pass][in box, outside]
        (`context.table_parameters`).
        """
        _rans = _compiled()
        dtypes = [int_type(b) for b in bounds]
        # One buffer, each level at an offset aligned to its integer size: one allocation and one call per record.
        table, offset = [], 0
        for (h, w), dtype, bound in zip(sizes, dtypes, bounds):
            offset = -(-offset // 4) * 4
            table.append((h, w, offset, dtype.itemsize, bound))
            offset += h * w * dtype.itemsize
        buffer = np.empty(offset, np.uint8)
        peaks = self._call(
            _rans.decode_levels,
            buffer,
            np.array(table, np.int64),
            np.ascontiguousarray(rects, np.int32),
            int(box_levels),
            np.ascontiguousarray(params, np.float64),
        )
        levels = [
            buffer[start : start + h * w * size].view(dtype).reshape(h, w)
            for (h, w, start, size, _), dtype in zip(table, dtypes)
        ]
        return levels, list(peaks)

    def _call(self, fn: Callable, *args: object) -> object:
        try:
            return fn(self._data, self._state, *args)
        except ValueError as exc:
            raise FormatError(f"latent stream is corrupt: {exc}") from None

    def finish(self) -> None:
        """Check that every word of the stream was used and the coder is back at its start state."""
        x, pos, words = (int(v) for v in self._state)
        if pos != words or x != 1 << 16:
            raise FormatError("latent stream has trailing data" if pos != words else "latent stream is corrupt")
