"""Short, paired detector trainings on shard folders: train with a data module, evaluate on reference shards.

The demo and the accuracy benchmark compare codecs by training the same EdgeDetector from the same seed on shards of
each codec and evaluating every model on the same validation shards (originals stored losslessly). A seed fixes the
initial weights, the shuffle and the augmentation draws, so runs that differ only in the training shards are paired.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_modules.data import JPEGDataModule, ShardDataModule
from lightning_modules.detector import EdgeDetector, plain_targets
from lightning_modules.networks import Detections
from rinr_data.core.metrics import RegionDetail, region_detail
from rinr_data.pipeline.augment import AugmentConfig

# Lightning's advice (loader workers, log interval, iterable datasets with a length) and deprecation notices from
# its dependencies are noise in these short runs, whose results are printed as one table.
_QUIET_WARNINGS = (
    ".*does not have many workers.*",
    ".*log_every_n_steps.*",
    ".*smaller than the logging interval.*",
    ".*persistent_workers.*",
    ".*`IterableDataset` has `__len__` defined.*",
    ".*set_vital.*",
    ".*LeafSpec.*",
)


@dataclass(frozen=True)
class TrainSettings:
    """How one detector is trained and evaluated.

    Args:
        steps: optimizer steps (the cosine schedule spans exactly these).
        batch_size: frames per step.
        lr: AdamW peak learning rate.
        warmup_steps: linear warmup steps (capped at a fifth of `steps`).
        augment: flip / scale / colour augmentation on training batches (True: AugmentConfig's defaults), or an
            AugmentConfig.
        image_size: (H, W) frames are letterboxed to; None keeps the stored size.
        num_workers: loader worker processes.
        accelerator: Lightning accelerator ("cpu", "gpu", "auto"); batches are decoded on its device.
        progress: show Lightning's progress bar.
    """

    steps: int = 200
    batch_size: int = 8
    lr: float = 2e-3
    warmup_steps: int = 20
    augment: bool | AugmentConfig = True
    image_size: tuple[int, int] | None = None
    num_workers: int = 0
    accelerator: str = "auto"
    progress: bool = False


@dataclass
class RunResult:
    """One training: wall time of fit(), images seen, mAP and the operating-point errors on the evaluation shards."""

    seed: int
    train_s: float
    images: int
    map_50: float
    map: float
    precision: float = float("nan")
    recall: float = float("nan")
    fp_per_image: float = float("nan")
    model: EdgeDetector | None = field(default=None, repr=False, compare=False)

    @property
    def images_per_s(self) -> float:
        """Training throughput, data loading and decode included."""
        return self.images / self.train_s


@contextlib.contextmanager
def _quiet(settings: TrainSettings):
    """Silence Lightning's banner lines and the warnings above unless a progress bar was asked for."""
    if settings.progress:
        yield
        return
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        logger.setLevel(level)


def _trainer(settings: TrainSettings, **kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator=settings.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=settings.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def data_module(
    module: type[ShardDataModule], train: str | Path, settings: TrainSettings, seed: int
) -> ShardDataModule:
    """`module` over the training shards with the settings' loader options."""
    return module(
        train=str(train),
        batch_size=settings.batch_size,
        num_workers=settings.num_workers,
        image_size=settings.image_size,
        augment=settings.augment,
        seed=seed,
    )


def train_detector(
    module: type[ShardDataModule], train: str | Path, settings: TrainSettings, seed: int, num_classes: int | None = None
) -> tuple[EdgeDetector, float]:
    """EdgeDetector trained for `settings.steps` on the `train` shards read by `module`; (model, fit seconds).

    `num_classes` defaults to the manifest's class count (1 for shards without a manifest).
    """
    L.seed_everything(seed, workers=True, verbose=False)
    dm = data_module(module, train, settings, seed)
    classes = dm.classes
    model = EdgeDetector(
        num_classes=num_classes or (len(classes) if classes else 1),
        lr=settings.lr,
        warmup_steps=max(1, min(settings.warmup_steps, settings.steps // 5)),
        max_steps=settings.steps,
    )
    with _quiet(settings):
        trainer = _trainer(settings, max_steps=settings.steps, limit_val_batches=0, log_every_n_steps=10)
        t = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        seconds = time.perf_counter() - t
    if trainer.global_step != settings.steps:
        raise RuntimeError(f"training stopped after {trainer.global_step} of {settings.steps} steps")
    return model, seconds


def _in_order(
    shards: str | Path, settings: TrainSettings, module: type[ShardDataModule] = JPEGDataModule, **kwargs: Any
) -> ShardDataModule:
    """`module` serving the `shards` unaugmented and in order (its val loader): the evaluation frames by default."""
    options = {"num_workers": settings.num_workers, "image_size": settings.image_size, **kwargs}
    return module(train=str(shards), val=str(shards), batch_size=settings.batch_size, augment=False, **options)


def evaluate(model: EdgeDetector, val: str | Path, settings: TrainSettings) -> dict[str, float]:
    """COCO mAP@0.5 and mAP@[.5:.95] of `model` on the `val` shards (JPEG/WebP, e.g. lossless originals), and its
    precision, recall and false positives per image at its operating threshold."""
    dm = _in_order(val, settings)
    with _quiet(settings):
        result = _trainer(settings).validate(model, datamodule=dm, verbose=False)[0]
    names = ("map_50", "map", "precision", "recall", "fp_per_image")
    return {name: float(result[f"val/{name}"]) for name in names}


@dataclass
class FrameDetections:
    """One evaluation frame: its key, pixels (float [3, H, W] in [0, 1]), true boxes and the model's detections."""

    key: str
    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    detections: Detections


def detect(model: EdgeDetector, val: str | Path, settings: TrainSettings) -> list[FrameDetections]:
    """`model`'s detections (above its score threshold) on every frame of the `val` shards, in shard order, on CPU."""
    dm = _in_order(val, settings, num_workers=0, device="cpu")
    model = model.cpu()
    frames = []
    with _quiet(settings):
        for batch in dm.val_dataloader():
            for key, image, (boxes, labels), det in zip(
                batch["keys"], batch["images"], plain_targets(batch["targets"]), model.predict(batch["images"])
            ):
                frames.append(FrameDetections(key, image, boxes, labels, det))
    return frames


def train_and_evaluate(
    module: type[ShardDataModule],
    train: str | Path,
    val: str | Path,
    settings: TrainSettings,
    seed: int,
    num_classes: int | None = None,
) -> RunResult:
    """train_detector then evaluate: one paired run (the trained model rides along in `model`)."""
    model, seconds = train_detector(module, train, settings, seed, num_classes)
    scores = evaluate(model, val, settings)
    return RunResult(seed, seconds, settings.steps * settings.batch_size, **scores, model=model)


def frame_detail(module: type[ShardDataModule], train: str | Path, settings: TrainSettings) -> RegionDetail:
    """Mean fine detail of the `train` frames as `module` decodes them (native size, no augmentation), inside the
    boxes (frames that have some) and outside them."""
    dm = _in_order(train, settings, module, image_size=None)  # letterbox padding would count as flat background
    details = []
    with _quiet(settings):
        for batch in dm.val_dataloader():
            details += [
                region_detail(image, target["boxes"].tolist())
                for image, target in zip(batch["images"], batch["targets"])
            ]
    inside = [d.objects for d in details if not math.isnan(d.objects)]
    return RegionDetail(
        objects=statistics.fmean(inside) if inside else math.nan,
        background=statistics.fmean(d.background for d in details),
    )


def loader_speed(
    module: type[ShardDataModule],
    train: str | Path,
    settings: TrainSettings,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """Images/s one training epoch of `module` delivers (decode, letterbox and augmentation; no model)."""
    dm = data_module(module, train, settings, seed)
    dm.device = device
    images = 0
    with _quiet(settings):
        loader = dm.train_dataloader()
        t = time.perf_counter()
        for batch in loader:
            images += len(batch["keys"])
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - t)
