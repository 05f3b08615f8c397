"""Devices and ranks: device selection, the decode tile size, and this process's place in a distributed run."""

from __future__ import annotations

import os

import torch

# Pixels per decode tile. Every INR's pixels are cut into tiles of this fixed size so each batched GEMM is the same
# whatever the group size: a batched decode then gives bit-identical results to a per-record decode.
TILE = 1024


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Map "auto"/None to CUDA when available (else CPU) and validate explicit names."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def rank_and_world() -> tuple[int, int]:
    """This process's (rank, world size): from torch.distributed when initialised, else torchrun's RANK/WORLD_SIZE."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
