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


def quantize_tensor(x: torch.Tensor, bits: int) -> QuantizedTensor:
    """Quantise a float tensor to signed integers of `bits` bits with one scale."""
    flat = x.detach().to("cpu", torch.float32).reshape(-1).numpy()
    bound = qmax(bits)
    scale = f16_scale(float(np.abs(flat).max(initial=0.0)), bound)
    values = np.clip(np.rint(flat / np.float32(scale)), -bound, bound).astype(np.int32)
    return QuantizedTensor(values, scale, bits)
