"""Uniform symmetric quantisation of INR weights, one float16 scale per tensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .siren import Params, SirenShape


@dataclass
class QuantizedTensor:
    """Integers `values` with `value * scale` the dequantised tensor; `bits` bounds |value| <= 2**(bits-1) - 1."""

    values: np.ndarray  # int32, flattened
    scale: float  # exactly representable in float16
    bits: int

    def dequantize(self) -> torch.Tensor:
        """Float32 tensor of the dequantised values (flattened)."""
        return torch.from_numpy(self.values.astype(np.float32)) * np.float32(self.scale)


@dataclass
class QuantizedINR:
    """One SIREN's quantised weights and biases, layer by layer."""

    shape: SirenShape
    tensors: list[QuantizedTensor]  # weight0, bias0, weight1, bias1, ...

    def to_params(self, device: torch.device | str = "cpu") -> Params:
        """Dequantised parameters as a group of one: per layer weight [1, in, out], bias [1, 1, out]."""
        params: Params = []
        for layer, (fan_in, fan_out) in enumerate(self.shape.layer_dims()):
            weight = self.tensors[2 * layer].dequantize().view(1, fan_in, fan_out)
            bias = self.tensors[2 * layer + 1].dequantize().view(1, 1, fan_out)
            params.append((weight.to(device), bias.to(device)))
        return params


def tensor_bits(shape: SirenShape, weight_bits: int, first_layer_bits: int) -> list[int]:
    """Bits of every tensor of an INR in storage order (weight0, bias0, ...)."""
    bits = []
    for layer in range(len(shape.layer_dims())):
        bits += [first_layer_bits if layer == 0 else weight_bits, weight_bits]
    return bits


def f16_scale(max_abs: float, qmax: int) -> float:
    """Smallest float16 step with max_abs / step <= qmax, so rounding never saturates."""
    scale = np.float16(max(max_abs, 1e-8) / qmax)
    while float(scale) * qmax < max_abs:
        scale = np.nextafter(scale, np.float16(np.inf))
    return float(max(scale, np.float16(2.0 ** -24)))


def quantize_tensor(x: torch.Tensor, bits: int) -> QuantizedTensor:
    """Quantise a float tensor to signed integers of `bits` bits with one scale."""
    flat = x.detach().to("cpu", torch.float32).reshape(-1).numpy()
    qmax = 2 ** (bits - 1) - 1
    scale = f16_scale(float(np.abs(flat).max(initial=0.0)), qmax)
    values = np.clip(np.rint(flat / np.float32(scale)), -qmax, qmax).astype(np.int32)
    return QuantizedTensor(values, scale, bits)


def quantize_group(shape: SirenShape, params: Params, weight_bits: int, first_layer_bits: int) -> list[QuantizedINR]:
    """Quantise every INR of a stacked group."""
    bits = tensor_bits(shape, weight_bits, first_layer_bits)
    count = params[0][0].shape[0]
    result = []
    for i in range(count):
        flat = [t[i] for pair in params for t in pair]
        result.append(QuantizedINR(shape, [quantize_tensor(t, b) for t, b in zip(flat, bits)]))
    return result


def stack_params(inrs: list[QuantizedINR], device: torch.device | str = "cpu") -> Params:
    """Dequantise INRs of one shape into a stacked group."""
    per_inr = [inr.to_params("cpu") for inr in inrs]
    return [
        (torch.cat([p[layer][0] for p in per_inr]).to(device), torch.cat([p[layer][1] for p in per_inr]).to(device))
        for layer in range(len(per_inr[0]))
    ]
