"""Shared fixtures: tiny synthetic frames and the real sample frames under tests/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    import os

    import torch

    # Test tensors are tiny: thread start-up dominates, and on a loaded 2-core machine spinning OpenMP threads
    # slowed tiny fits 60x. Subprocesses started by tests inherit the variable.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Frames of 256x256 or more fit under torch.compile by default: minutes of compiling on a fresh CI machine for
    # fits of a few steps. tests/test_fit_compile.py checks the compiled step against the eager one ("on").
    os.environ.setdefault("RINR_COMPILE", "0")
    torch.set_num_threads(1)
    config.addinivalue_line("markers", "slow: long-running; excluded from `make test`")
    config.addinivalue_line("markers", "soak: minutes-long memory soak (pytest -m soak); excluded from `make test`")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    # Not a silent skip of an assert: the GPU tests are reported as skipped with the reason.
    marker = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(marker)


def smooth_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour field with a few soft blobs: easy enough for a tiny INR to fit in a few steps."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 6.28)
        img[..., c] = 0.5 + 0.35 * np.sin(fx * x / width * 3.14 + ph) * np.cos(fy * y / height * 3.14)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture
def tiny_frame() -> np.ndarray:
    """A 24x32 synthetic frame."""
    return smooth_frame(24, 32)


@pytest.fixture(scope="session")
def vtest_frames() -> tuple[list[np.ndarray], list[list[list[float]]]]:
    """The committed real frames with their xyxy boxes."""
    from PIL import Image

    ann = json.loads((DATA / "vtest-dev" / "annotations.json").read_text())
    images, boxes = [], []
    for im in ann["images"]:
        images.append(np.asarray(Image.open(DATA / "vtest-dev" / "images" / im["file_name"]).convert("RGB")))
        boxes.append(
            [
                [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                for a in ann["annotations"]
                if a["image_id"] == im["id"]
            ]
        )
    return images, boxes
