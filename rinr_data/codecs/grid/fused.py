"""Fused latent-grid synthesis: one Triton kernel per shape group upsamples every level and runs the MLP.

The reference `model.render` writes the upsampled features [B, L, H, W] to memory, transposes and pads them into
tiles, and runs one batched GEMM per layer with every intermediate in memory too: by count some 0.5 KB of DRAM
traffic for the ~500 MACs of a pixel (default shape), bound by bandwidth, not arithmetic. Here a program takes BLOCK
consecutive pixels of one frame and keeps everything between the latents and the RGB in registers, reading the
latents and weights and writing the float RGB only:

- bicubic as upsample_bicubic2d defines it (Keys' kernel with A = -0.75, align_corners=False source coordinate
  `scale * (dst + 0.5) - 0.5` with scale = in / out rounded to float32, taps clamped to the border, the 4 taps of a
  row summed along x first, then the 4 rows along y, as PyTorch's CPU and CUDA kernels sum them). Level 0, the
  frame's size, is read directly, as the reference takes it without interpolating (weights (0, 1, 0, 0) would give
  the same value);
- the first layer as L rank-1 updates, one as each level's value is ready (no feature matrix); the later layers as
  `tl.dot` in IEEE fp32 (FMA, never TF32: the reference is an fp32 GEMM), widths padded to powers of two (at least
  8, the smallest K of an fp32 dot), padded weights loaded as zeros so padded lanes stay zero through the ReLUs;
- level count and widths are compile-time (one compiled kernel per GridShape); level sizes, scales and pointers
  travel as tuples of run-time arguments, the sizes as float32 because Triton specialises ints inside tuples on
  their value (a compile per frame size);
- a pixel's arithmetic depends on its frame's latents and weights and on compile-time sizes only, never on the
  batch or its position in it: a frame decodes to the same bits alone or in a batch, the property the fixed tiles of
  `model.synthesize` give the reference.

Not bit-identical to the reference: sums run in another order and the GPU contracts multiply-adds, so results agree
to float rounding (~1e-6), within one level after rounding to uint8. `model.render` uses this kernel where
`available(device)` and RINR_FUSED is not "0", for float32 inputs outside autograd. Triton is optional: without it
this module imports and `available` is False. With TRITON_INTERPRET=1 Triton's interpreter runs the kernel on CPU
tensors (slowly: for tests on machines without a GPU).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

import numpy as np
import torch

# Imported by _load_triton on first use, so CPU decoding never pays for it; the kernel reads `tl` from these globals
# when it compiles.
triton: Any = None
tl: Any = None

MIN_DOT_K = 8  # Triton's smallest K of an fp32 tl.dot on NVIDIA (16 for 16-bit types)
BLOCK_ELEMENTS = 2048  # BLOCK x widest padded layer: ~16 fp32 registers per thread and activation at 4 warps
# Widest layer the kernel takes (after padding): compiled for sm_90, 32 fits in 128 registers without spilling, 64
# spills, and a 256-wide fp32 dot operand needs more shared memory than an SM has. Wider MLPs (the format allows 255)
# get the reference path.
MAX_WIDTH = 32


def enabled() -> bool:
    """Whether RINR_FUSED allows the fused kernel (anything but "0")."""
    return os.environ.get("RINR_FUSED", "1") != "0"


@functools.cache
def _load_triton() -> bool:
    global triton, tl
    try:
        import triton as triton_module
        import triton.language as language
    except ImportError:  # the package decodes without Triton: `model.render` keeps the PyTorch path
        return False
    triton, tl = triton_module, language
    return True


def _interpreting() -> bool:
    # The switch Triton's own @jit reads when it decorates (not at import): the kernel is decorated lazily, per mode.
    return bool(triton.knobs.runtime.interpret)


def available(device: torch.device | str) -> bool:
    """Whether `render_fused` runs on `device`: Triton importable and a CUDA device, or CPU under TRITON_INTERPRET=1."""
    kind = torch.device(device).type
    if kind == "cpu" and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return False  # decided without importing Triton: the common CPU decode
    return kind in ("cuda", "cpu") and _load_triton() and (kind == "cuda" or _interpreting())


def supports(layers: list[tuple[torch.Tensor, torch.Tensor]], latents: list[torch.Tensor]) -> bool:
    """Whether the inputs suit the kernel: layers at most MAX_WIDTH wide, float32 weights and latents (or integer
    latents), nothing to differentiate."""
    tensors = [t for layer in layers for t in layer]
    if any(_padded(int(w.shape[-1])) > MAX_WIDTH for w, _ in layers):
        return False
    # A float64 (or half) caller keeps the reference's arithmetic in its own precision.
    if any(t.dtype != torch.float32 for t in tensors):
        return False
    if any(t.dtype != torch.float32 and (t.is_floating_point() or t.is_complex()) for t in latents):
        return False
    # The kernel has no backward: a fit that differentiates `render` gets the reference.
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors + latents))


def _padded(width: int, minimum: int = 1) -> int:
    """The power of two tl.arange needs, at least `minimum`."""
    return max(minimum, 1 << (width - 1).bit_length())


def _scale(n_in: int, n_out: int) -> float:
    """upsample_bicubic2d's scale: in / out divided in float32 (a Python float carries that value exactly)."""
    return float(np.float32(n_in) / np.float32(n_out))


def _synthesis_kernel(
    out_ptr,
    lat_ptrs,
    lat_rows,
    lat_cols,
    scale_rows,
    scale_cols,
    w_ptrs,
    b_ptrs,
    height,
    width,
    tiles,
    LEVELS: tl.constexpr,
    LAYERS: tl.constexpr,
    DIMS: tl.constexpr,
    PADS: tl.constexpr,
    IDENTITY0: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    frame = (pid // tiles).to(tl.int64)
    n = height * width
    pix = (pid % tiles) * BLOCK + tl.arange(0, BLOCK)
    live = pix < n
    # Pixel centres; dead lanes past the frame get rows beyond it, which the border clamp keeps in bounds.
    ys = (pix // width).to(tl.float32) + 0.5
    xs = (pix % width).to(tl.float32) + 0.5
    a = -0.75  # upsample_bicubic2d's cubic convolution coefficient

    hid = tl.arange(0, PADS[1])
    # tl.full, not tl.zeros: zeros is itself a @jit function, decorated when Triton was imported, which the
    # interpreter cannot call unless TRITON_INTERPRET was set before that import (the kernel only uses builtins).
    acc = tl.full([BLOCK, PADS[1]], 0.0, tl.float32)
    for lv in tl.static_range(LEVELS):
        rows = tl.cast(lat_rows[lv], tl.int32)
        cols = tl.cast(lat_cols[lv], tl.int32)
        base = lat_ptrs[lv] + frame * rows * cols
        if IDENTITY0 and lv == 0:
            value = tl.load(base + pix, mask=live, other=0.0)
        else:
            sy = scale_rows[lv] * ys - 0.5
            sx = scale_cols[lv] * xs - 0.5
            # Index and fraction guarded as the CPU kernel does (a no-op when upsampling, which is all grids do).
            iy = tl.minimum(tl.floor(sy).to(tl.int32), rows - 1)
            ix = tl.minimum(tl.floor(sx).to(tl.int32), cols - 1)
            ty = tl.minimum(tl.maximum(sy - iy.to(tl.float32), 0.0), 1.0)
            tx = tl.minimum(tl.maximum(sx - ix.to(tl.float32), 0.0), 1.0)
            # Weights of taps -1, 0, +1, +2, each term as get_cubic_upsample_coefficients writes it.
            uy = 1.0 - ty
            ux = 1.0 - tx
            wy0 = ((a * (ty + 1.0) - 5.0 * a) * (ty + 1.0) + 8.0 * a) * (ty + 1.0) - 4.0 * a
            wy1 = ((a + 2.0) * ty - (a + 3.0)) * ty * ty + 1.0
            wy2 = ((a + 2.0) * uy - (a + 3.0)) * uy * uy + 1.0
            wy3 = ((a * (uy + 1.0) - 5.0 * a) * (uy + 1.0) + 8.0 * a) * (uy + 1.0) - 4.0 * a
            wx0 = ((a * (tx + 1.0) - 5.0 * a) * (tx + 1.0) + 8.0 * a) * (tx + 1.0) - 4.0 * a
            wx1 = ((a + 2.0) * tx - (a + 3.0)) * tx * tx + 1.0
            wx2 = ((a + 2.0) * ux - (a + 3.0)) * ux * ux + 1.0
            wx3 = ((a * (ux + 1.0) - 5.0 * a) * (ux + 1.0) + 8.0 * a) * (ux + 1.0) - 4.0 * a
            # Clamped taps are always inside the level: the loads need no mask, dead lanes included.
            c0 = tl.minimum(tl.maximum(ix - 1, 0), cols - 1)
            c1 = tl.minimum(tl.maximum(ix, 0), cols - 1)
            c2 = tl.minimum(tl.maximum(ix + 1, 0), cols - 1)
            c3 = tl.minimum(tl.maximum(ix + 2, 0), cols - 1)
            r = base + tl.minimum(tl.maximum(iy - 1, 0), rows - 1) * cols
            v0 = wx0 * tl.load(r + c0) + wx1 * tl.load(r + c1) + wx2 * tl.load(r + c2) + wx3 * tl.load(r + c3)
            r = base + tl.minimum(tl.maximum(iy, 0), rows - 1) * cols
            v1 = wx0 * tl.load(r + c0) + wx1 * tl.load(r + c1) + wx2 * tl.load(r + c2) + wx3 * tl.load(r + c3)
            r = base + tl.minimum(tl.maximum(iy + 1, 0), rows - 1) * cols
            v2 = wx0 * tl.load(r + c0) + wx1 * tl.load(r + c1) + wx2 * tl.load(r + c2) + wx3 * tl.load(r + c3)
            r = base + tl.minimum(tl.maximum(iy + 2, 0), rows - 1) * cols
            v3 = wx0 * tl.load(r + c0) + wx1 * tl.load(r + c1) + wx2 * tl.load(r + c2) + wx3 * tl.load(r + c3)
            value = wy0 * v0 + wy1 * v1 + wy2 * v2 + wy3 * v3
        w_row = tl.load(w_ptrs[0] + frame * (DIMS[0] * DIMS[1]) + lv * DIMS[1] + hid, mask=hid < DIMS[1], other=0.0)
        acc += value[:, None] * w_row[None, :]
    bias = tl.load(b_ptrs[0] + frame * DIMS[1] + hid, mask=hid < DIMS[1], other=0.0)
    h = acc + bias[None, :]

    for i in tl.static_range(1, LAYERS):
        h = tl.maximum(h, 0.0)
        k = tl.arange(0, PADS[i])
        o = tl.arange(0, PADS[i + 1])
        w = tl.load(
            w_ptrs[i] + frame * (DIMS[i] * DIMS[i + 1]) + k[:, None] * DIMS[i + 1] + o[None, :],
            mask=(k[:, None] < DIMS[i]) & (o[None, :] < DIMS[i + 1]),
            other=0.0,
        )
        bias = tl.load(b_ptrs[i] + frame * DIMS[i + 1] + o, mask=o < DIMS[i + 1], other=0.0)
        h = tl.dot(h, w, input_precision="ieee") + bias[None, :]

    o = tl.arange(0, PADS[LAYERS])
    dst = out_ptr + frame * (DIMS[LAYERS] * n) + o[None, :] * n + pix[:, None]
    tl.store(dst, h, mask=live[:, None] & (o[None, :] < DIMS[LAYERS]))


# Sizes vary per frame size: specialising on them (value 1, divisibility by 16) would compile a kernel per size.
# do_not_specialize does not reach into tuples, so the level sizes travel as float32 (exact below 2**24; Triton
# never specialises floats).
_RUNTIME_SIZES = ["height", "width", "tiles"]


@functools.lru_cache(maxsize=2)
def _kernel(interpret: bool) -> Any:
    """The Triton kernel, compiled (False) or interpreted (True): @jit picks by TRITON_INTERPRET when it decorates."""
    del interpret  # only the cache key: the decoration reads the same switch
    if not _load_triton():
        raise RuntimeError("the fused synthesis needs Triton (pip install triton)")
    return triton.jit(_synthesis_kernel, do_not_specialize=_RUNTIME_SIZES)


def launch_config(dims: tuple[int, ...]) -> dict[str, Any]:
    """Compile-time arguments of the kernel for layer widths `dims` (levels first, output last)."""
    # Widths that are a dot's K need MIN_DOT_K; the output width is only ever N.
    pads = (dims[0],) + tuple(_padded(d, MIN_DOT_K) for d in dims[1:-1]) + (_padded(dims[-1]),)
    block = max(16, min(128, BLOCK_ELEMENTS // max(pads[1:])))
    return {"LEVELS": dims[0], "LAYERS": len(dims) - 1, "DIMS": dims, "PADS": pads, "BLOCK": block}


def launch(
    layers: list[tuple[torch.Tensor, torch.Tensor]], latents: list[torch.Tensor], height: int, width: int
) -> tuple[torch.Tensor, int, tuple, dict[str, Any]]:
    """The output (uninitialised), grid size, positional and keyword arguments of one group's kernel launch."""
    device = latents[0].device
    batch = latents[0].shape[0]
    lats = [t.to(torch.float32).contiguous() for t in latents]  # integer latents cast exactly, as packing does
    dims = (len(lats),) + tuple(int(w.shape[2]) for w, _ in layers)
    for i, (w, b) in enumerate(layers):
        if w.shape != (batch, dims[i], dims[i + 1]) or b.shape != (batch, 1, dims[i + 1]):
            raise ValueError(f"layer {i}: weight {tuple(w.shape)}, bias {tuple(b.shape)} for widths {dims}")
        if w.dtype != torch.float32 or b.dtype != torch.float32:
            raise TypeError(f"layer {i}: render_fused takes float32 weights, got {w.dtype} / {b.dtype}")
    for lv, t in enumerate(lats):
        if t.dim() != 4 or t.shape[:2] != (batch, 1) or t.shape[2] < 1 or t.shape[3] < 1:
            raise ValueError(f"level {lv}: latents of shape {tuple(t.shape)}, expected [{batch}, 1, h, w]")
    if any(t.device != device for t in lats + [t for layer in layers for t in layer]):
        raise ValueError("render_fused takes latents and layers on one device")
    out = torch.empty(batch, dims[-1], height, width, device=device, dtype=torch.float32)
    config = launch_config(dims)
    tiles = -(-height * width // config["BLOCK"])
    scales = [(_scale(t.shape[2], height), _scale(t.shape[3], width)) for t in lats]
    args = (
        out,
        tuple(lats),
        tuple(float(t.shape[2]) for t in lats),
        tuple(float(t.shape[3]) for t in lats),
        tuple(s[0] for s in scales),
        tuple(s[1] for s in scales),
        tuple(w.contiguous() for w, _ in layers),
        tuple(b.contiguous() for _, b in layers),
        height,
        width,
        tiles,
    )
    kwargs = {**config, "IDENTITY0": tuple(lats[0].shape[2:]) == (height, width), "num_warps": 4}
    return out, batch * tiles, args, kwargs


def render_fused(
    layers: list[tuple[torch.Tensor, torch.Tensor]], latents: list[torch.Tensor], height: int, width: int
) -> torch.Tensor:
    """Float RGB [B, 3, H, W] (unclamped) of B frames of one size and shape in one kernel launch, as `model.render`."""
    if not _load_triton():
        raise RuntimeError("render_fused needs Triton (pip install triton)")
    out, programs, args, kwargs = launch(layers, latents, height, width)
    if programs == 0:
        return out
    device = out.device
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        _kernel(_interpreting())[(programs,)](*args, **kwargs)
    return out
