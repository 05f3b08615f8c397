"""Quantised SIREN weights: one QuantizedTensor per weight and bias, stacked by shape for a batched forward."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...format.quantize import QuantizedTensor, quantize_tensor
from .siren import Params, SirenShape


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
