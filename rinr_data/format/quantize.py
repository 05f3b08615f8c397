"""Uniform symmetric quantisation of weights and latents: integers of `bits` bits, one float16 scale per tensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def qmax(bits: int) -> int:
    """Largest |integer| a signed `bits`-bit quantiser produces (symmetric: -qmax..qmax)."""
    return 2 ** (bits - 1) - 1


@dataclass
class QuantizedTensor:
    """Integers `values` with `value * scale` the dequantised tensor; `bits` bounds |value| <= 2**(bits-1) - 1."""

    values: np.ndarray  # int32, flattened
    scale: float  # exactly representable in float16
    bits: int

    def dequantize(self) -> torch.Tensor:
        """Float32 tensor of the dequantised values (flattened)."""
        # Multiplied in NumPy: a torch op with a NumPy scalar costs more than the whole product for these sizes.
        return torch.from_numpy(self.values.astype(np.float32) * np.float32(self.scale))


def f16_scale(max_abs: float, bound: int) -> float:
    """Smallest float16 step with max_abs / step <= bound, so rounding never saturates."""
    scale = np.float16(max(max_abs, 1e-8) / bound)
    while float(scale) * bound < max_abs:
        scale = np.nextafter(scale, np.float16(np.inf))
    return float(max(scale, np.float16(2.0**-24)))


_F16_MIN_NORMAL = 2.0**-14
_F16_SUBNORMAL = 2.0**-24  # the spacing of float16 below its smallest normal, and its smallest step here
_F16_DROPPED = (1 << 13) - 1  # the float32 mantissa bits float16 does not have


def f16_steps(max_abs: torch.Tensor, bound: int) -> torch.Tensor:
    """`f16_scale` of every element of a float32 tensor (the same values), in float32, on its device.

    Float32 bit operations rather than a cast to float16 and back: torch.compile may keep a float16 cast in float32
    (inductor does not emulate precision casts by default), and a fit compiled that way would train against other
    steps than the record ships with.
    """
    q = max_abs.clamp_min(1e-8) / bound

    def ceil16(v: torch.Tensor) -> torch.Tensor:  # the least float16 value >= v (v > 0, finite)
        normal = ((v.view(torch.int32) + _F16_DROPPED) & ~_F16_DROPPED).view(torch.float32)
        return torch.where(v >= _F16_MIN_NORMAL, normal, torch.ceil(v / _F16_SUBNORMAL) * _F16_SUBNORMAL)

    def up16(v: torch.Tensor) -> torch.Tensor:  # the next float16 value above v (v a float16 value)
        normal = (v.view(torch.int32) + _F16_DROPPED + 1).view(torch.float32)
        return torch.where(v >= _F16_MIN_NORMAL, normal, v + _F16_SUBNORMAL)

    step = ceil16(q)
    # q was rounded to float32, so its float16 ceiling may sit one value below the exact quotient's; in float64
    # step * bound is exact for any bound below 2**42, so this comparison is f16_scale's.
    step = torch.where(step.double() * bound < max_abs.double(), up16(step), step)
    return step.clamp_min(_F16_SUBNORMAL)


def quantize_tensor(x: torch.Tensor, bits: int) -> QuantizedTensor:
    """Quantise a float tensor to signed integers of `bits` bits with one scale."""
    flat = x.detach().to("cpu", torch.float32).reshape(-1).numpy()
    bound = qmax(bits)
    scale = f16_scale(float(np.abs(flat).max(initial=0.0)), bound)
    values = np.clip(np.rint(flat / np.float32(scale)), -bound, bound).astype(np.int32)
    return QuantizedTensor(values, scale, bits)
