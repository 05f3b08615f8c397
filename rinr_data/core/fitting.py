"""What every fitted codec shares: seed derivation, the cosine learning-rate schedule, the PSNR stopping margin."""

from __future__ import annotations

import math

# Fits stop (or aim) this many dB above their target, so that quantisation and rounding still leave them above it.
PSNR_MARGIN = 0.15
_SEED_STRIDE = 1000003  # a prime: seeds of different (seed, salt) pairs never collide for salts below it


def derive_seed(seed: int, salt: int) -> int:
    """The seed of one fit among the several of an encode call (`salt` numbers them); the same inputs, the same seed."""
    return seed * _SEED_STRIDE + salt


def cosine_lr(step: int, total: int, base: float, floor: float) -> float:
    """Cosine decay from `base` at step 0 to `floor * base` at step `total`."""
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / max(total, 1))))
