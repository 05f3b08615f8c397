"""Lossless coding of the quantised integer stream of a record; each coder is a (compress, decompress) pair."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .errors import FormatError

# Coder ids are part of the record format (docs/FORMAT.md): never renumber.
CODER_IDS = {"raw": 0, "zstd": 1, "brotli": 2, "ans": 3}
CODERS = tuple(CODER_IDS)
CODER_NAMES = {v: k for k, v in CODER_IDS.items()}

Streams = Sequence[np.ndarray]  # int32 arrays, one per tensor


def _pack_ints(streams: Streams, bits: Sequence[int]) -> bytes:
    # One byte per value when every tensor fits in int8, else two: byte coders see a regular layout.
    dtype = np.int8 if max(bits, default=8) <= 8 else np.int16
    return b"".join(np.asarray(s, dtype=dtype).tobytes() for s in streams)


def _unpack_ints(data: bytes, counts: Sequence[int], bits: Sequence[int]) -> list[np.ndarray]:
    dtype = np.int8 if max(bits, default=8) <= 8 else np.int16
    itemsize = np.dtype(dtype).itemsize
    if len(data) != sum(counts) * itemsize:
        raise FormatError(f"weight stream holds {len(data)} bytes, expected {sum(counts) * itemsize}")
    flat = np.frombuffer(data, dtype=dtype).astype(np.int32)
    return list(np.split(flat, np.cumsum(counts)[:-1])) if counts else []


def _zstd_compress(raw: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=19, write_content_size=True).compress(raw)


def _zstd_decompress(data: bytes, expected: int) -> bytes:
    import zstandard

    try:
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise FormatError(f"zstd weight stream is corrupt: {exc}") from None


def _brotli_compress(raw: bytes) -> bytes:
    import brotli

    return brotli.compress(raw, quality=11, lgwin=16)


def _brotli_decompress(data: bytes, expected: int) -> bytes:
    import brotli

    try:
        out = brotli.decompress(data)
    except brotli.error as exc:
        raise FormatError(f"brotli weight stream is corrupt: {exc}") from None
    return out


def _ans_model(bits: int):
    import constriction

    qmax = 2 ** (bits - 1) - 1
    return constriction.stream.model.QuantizedGaussian(-qmax, qmax)


def _ans_compress(streams: Streams, bits: Sequence[int]) -> bytes:
    """Range-code every tensor with a zero-mean Gaussian whose float16 std travels in front of the words."""
    import constriction

    stds = [float(np.float16(max(float(np.std(s)) if len(s) else 1.0, 0.05))) for s in streams]
    coder = constriction.stream.stack.AnsCoder()
    # ANS is a stack: encode in reverse so the decoder reads tensors in order.
    for s, b, std in reversed(list(zip(streams, bits, stds))):
        if len(s):
            coder.encode_reverse(np.asarray(s, np.int32), _ans_model(b), np.zeros(len(s)), np.full(len(s), std))
    words = coder.get_compressed()
    return np.asarray(stds, np.float16).tobytes() + words.astype("<u4").tobytes()


def _ans_decompress(data: bytes, counts: Sequence[int], bits: Sequence[int]) -> list[np.ndarray]:
    import constriction

    head = 2 * len(counts)
    if len(data) < head or (len(data) - head) % 4:
        raise FormatError(f"ans weight stream has {len(data)} bytes, not a std table plus 32-bit words")
    stds = np.frombuffer(data[:head], np.float16).astype(np.float64)
    if not np.all(np.isfinite(stds)) or np.any(stds <= 0):
        raise FormatError("ans weight stream has a non-positive or non-finite std")
    words = np.frombuffer(data[head:], "<u4").astype(np.uint32)
    coder = constriction.stream.stack.AnsCoder(words)
    out = []
    try:
        for n, b, std in zip(counts, bits, stds):
            out.append(np.asarray(coder.decode(_ans_model(b), np.zeros(n), np.full(n, std)), np.int32)
                       if n else np.zeros(0, np.int32))
    except Exception as exc:  # constriction raises its own error types on exhausted or invalid words
        raise FormatError(f"ans weight stream is corrupt: {exc}") from None
    if not coder.is_empty():
        raise FormatError("ans weight stream has trailing data")
    return out


def compress(streams: Streams, bits: Sequence[int], coder: str) -> bytes:
    """Losslessly code integer tensors (each within its `bits`) with the named coder."""
    if coder == "ans":
        return _ans_compress(streams, bits)
    raw = _pack_ints(streams, bits)
    byte_coders: dict[str, Callable[[bytes], bytes]] = {
        "raw": lambda b: b, "zstd": _zstd_compress, "brotli": _brotli_compress,
    }
    if coder not in byte_coders:
        raise ValueError(f"unknown entropy coder {coder!r}; valid: {', '.join(CODERS)}")
    return byte_coders[coder](raw)


def decompress(data: bytes, counts: Sequence[int], bits: Sequence[int], coder_id: int) -> list[np.ndarray]:
    """Inverse of `compress`: the integer tensors, checked against their counts and bit widths."""
    if coder_id not in CODER_NAMES:
        raise FormatError(f"unknown entropy coder id {coder_id}; known: {sorted(CODER_NAMES)}")
    name = CODER_NAMES[coder_id]
    if name == "ans":
        streams = _ans_decompress(data, counts, bits)
    else:
        expected = sum(counts) * (1 if max(bits, default=8) <= 8 else 2)
        raw = {"raw": lambda d, e: d, "zstd": _zstd_decompress, "brotli": _brotli_decompress}[name](data, expected)
        streams = _unpack_ints(raw, counts, bits)
    for s, b in zip(streams, bits):
        qmax = 2 ** (b - 1) - 1
        if len(s) and int(np.abs(s).max()) > qmax:
            raise FormatError(f"weight value out of range for {b}-bit tensor")
    return streams


def coder_id(name: str) -> int:
    """Numeric id of a coder name, as stored in records."""
    if name not in CODER_IDS:
        raise ValueError(f"unknown entropy coder {name!r}; valid: {', '.join(CODERS)}")
    return CODER_IDS[name]


