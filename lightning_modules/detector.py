"""Edge object detector as a Lightning module: a tiny CenterNet by default, torchvision detectors as options.

Every architecture takes the batch contract of the rinr-data data modules: `images` float [B, 3, H, W] in [0, 1],
`targets` a list of B dicts with `boxes` (`tv_tensors.BoundingBoxes`, XYXY pixels) and `labels` (int64 class ids in
[0, num_classes)), `keys` a list of B strings. Inference returns, per image, a dict of xyxy pixel `boxes`, `scores`
and 0-based `labels`, whatever the architecture. The networks themselves are in `networks`.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from .detection_metrics import OPERATING_THRESHOLD, DetectionErrors
from .networks import (
    ARCHS,
    STRIDE,
    Arch,
    CenterNetConfig,
    Detections,
    build_centernet,
    build_torchvision_detector,
    centernet_loss,
    decode_centernet,
    encode_centernet_targets,
)

# ---------------------------------------------------------------------------------------------------------------------
# Batch helpers, metric, schedule


def plain_targets(targets: list[dict[str, Any]]) -> list[tuple[Tensor, Tensor]]:
    """(float xyxy [N, 4] plain tensor, int64 labels [N]) per image, without boxes of zero width or height.

    Degenerate boxes carry no object (a crop can leave them) and torchvision's detectors raise on them.
    """
    out = []
    for t in targets:
        boxes = t["boxes"]
        if isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format != tv_tensors.BoundingBoxFormat.XYXY:
            boxes = TF.convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY)
        boxes = boxes.as_subclass(Tensor).float().reshape(-1, 4)
        labels = torch.as_tensor(t["labels"], dtype=torch.int64, device=boxes.device).reshape(-1)
        if len(labels) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out.append((boxes[keep], labels[keep]))
    return out


def build_map_metric() -> MeanAveragePrecision:
    """COCO box mAP on the faster_coco_eval backend; raises if that backend is missing (no silent pycocotools)."""
    if importlib.util.find_spec("faster_coco_eval") is None:
        raise ImportError(
            "EdgeDetector evaluates with the faster_coco_eval backend of torchmetrics' "
            "MeanAveragePrecision, but `faster_coco_eval` is not installed: pip install faster-coco-eval"
        )
    return MeanAveragePrecision(iou_type="bbox", backend="faster_coco_eval")


@dataclass
class WarmupCosine:
    """LR factor per optimizer step: linear warmup from 1/warmup to 1, then cosine down to min_ratio at total."""

    warmup: int
    total: int
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        """Multiplier of the base learning rate at `step` (0-based)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        # Not rinr_data.core.fitting.cosine_lr: the same curve, but its pi * step / total rounds differently from
        # pi * t in the last bit, which would change every trained model and the benchmark runs recorded with this.
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _pad_to_stride(images: Tensor, stride: int) -> Tensor:
    """Zero-pad right and bottom so H and W divide by `stride`; boxes need no shift."""
    h, w = images.shape[-2:]
    ph, pw = -h % stride, -w % stride
    return F.pad(images, (0, pw, 0, ph)) if ph or pw else images


def _stack_images(images: Tensor | list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
    """[B, 3, H, W] batch (smaller images zero-padded right/bottom) and each image's own (H, W)."""
    if isinstance(images, Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        return images, [tuple(images.shape[-2:])] * images.shape[0]
    sizes = [tuple(im.shape[-2:]) for im in images]
    h, w = max(s[0] for s in sizes), max(s[1] for s in sizes)
    return torch.stack([F.pad(im, (0, w - im.shape[-1], 0, h - im.shape[-2])) for im in images]), sizes


# ---------------------------------------------------------------------------------------------------------------------
# Lightning module


class EdgeDetector(L.LightningModule):
    """Object detector trained on rinr-data batches; validation logs COCO `val/map_50`, `val/map` and the errors at
    `operating_threshold` per epoch.

    Args:
        num_classes: object classes (labels are 0-based ids below this), background not counted.
        arch: "centernet" (tiny anchor-free default, native resolution), "ssdlite" (ssdlite320_mobilenet_v3_large) or
            "fasterrcnn_mobilenet" (fasterrcnn_mobilenet_v3_large_320_fpn); all from scratch, no weight downloads.
            The torchvision ones resize internally to their 320-pixel input.
        lr: AdamW peak learning rate.
        weight_decay: AdamW decay of conv/linear weights (norm weights and biases are not decayed).
        warmup_steps: optimizer steps of linear warmup.
        max_steps: length of the cosine schedule in optimizer steps; None takes the trainer's estimated steps.
        min_lr_ratio: learning rate at the end of the cosine, as a fraction of lr.
        score_threshold: detections scoring below this are dropped at inference (keep it low for mAP).
        max_detections: detections kept per image.
        operating_threshold: score at which validation also counts hits, false alarms and misses (`val/precision`,
            `val/recall`, `val/fp_per_image`): mAP alone cannot tell clutter firing from missed objects.
    """

    def __init__(
        self,
        num_classes: int = 1,
        arch: Arch = "centernet",
        lr: float = 2e-3,
        weight_decay: float = 1e-2,
        warmup_steps: int = 100,
        max_steps: int | None = None,
        min_lr_ratio: float = 0.01,
        score_threshold: float = 0.05,
        max_detections: int = 100,
        operating_threshold: float = OPERATING_THRESHOLD,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.save_hyperparameters()
        self.centernet_cfg = CenterNetConfig(num_classes=num_classes)
        if arch == "centernet":
            self.model: nn.Module = build_centernet(self.centernet_cfg)
        else:
            self.model = build_torchvision_detector(arch, num_classes, score_threshold, max_detections)
        self.val_map = build_map_metric()
        self.val_errors = DetectionErrors(score_threshold=operating_threshold)

    # --- inference ---

    def forward(self, images: Tensor | list[Tensor]) -> list[Detections]:
        """Detections per image for [B, 3, H, W] images in [0, 1] (or a list of [3, H, W]); needs eval mode."""
        if self.training:
            raise RuntimeError("EdgeDetector.forward runs inference: call .eval() first, or use predict()")
        if self.hparams.arch != "centernet":
            dets = self.model(list(images))
            return [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] - 1} for d in dets]
        batch, sizes = _stack_images(images)
        outputs = self.model(_pad_to_stride(batch * 2 - 1, STRIDE))
        return decode_centernet(outputs, sizes, self.hparams.score_threshold, self.hparams.max_detections)

    @torch.no_grad()
    def predict(self, images: Tensor | list[Tensor]) -> list[Detections]:
        """forward() in eval mode without gradients; restores the previous mode."""
        was_training = self.training
        self.eval()
        try:
            return self(images)
        finally:
            self.train(was_training)

    # --- training ---

    def compute_loss(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """Total `loss` and its named parts for a batch in the data-module contract (train mode)."""
        plain = plain_targets(targets)
        labels = torch.cat([lb for _, lb in plain]) if plain else torch.zeros(0, dtype=torch.int64)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.hparams.num_classes):
            raise ValueError(f"labels must be in [0, {self.hparams.num_classes}), got {labels.unique().tolist()}")
        if self.hparams.arch != "centernet":
            tv_targets = [{"boxes": b, "labels": lb + 1} for b, lb in plain]  # class 0 is torchvision's background
            parts = self.model(list(images), tv_targets)
            return {"loss": sum(parts.values()), **parts}
        # Inputs centred on 0 so the zero padding (here and inside the convs) reads as mid-grey, not black.
        x = _pad_to_stride(images * 2 - 1, STRIDE)
        outputs = self.model(x)
        enc = encode_centernet_targets(
            plain, self.hparams.num_classes, tuple(outputs["heatmap"].shape[-2:]), self.centernet_cfg.gaussian_alpha
        )
        return centernet_loss(outputs, enc, self.centernet_cfg)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Loss of one batch; logs `train/loss` and its parts."""
        parts = self.compute_loss(batch["images"], batch["targets"])
        bs = len(batch["images"])
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items() if k != "loss"}, batch_size=bs)
        return parts["loss"]

    # --- evaluation ---

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Runs inference and accumulates the batch into the mAP metric."""
        preds = self(batch["images"])
        target = [{"boxes": b, "labels": lb} for b, lb in plain_targets(batch["targets"])]
        self.val_map.update(preds, target)
        self.val_errors.update(preds, target)

    def on_validation_epoch_end(self) -> None:
        """Logs `val/map_50`, `val/map` (mAP@[.5:.95]) and the operating-point errors over the epoch; resets both."""
        result = self.val_map.compute()
        self.log("val/map_50", result["map_50"], prog_bar=True)
        self.log("val/map", result["map"])
        self.log_dict({f"val/{k}": v.float() for k, v in self.val_errors.compute().items()})
        self.val_map.reset()
        self.val_errors.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[Detections]:
        """Detections for a batch dict (Trainer.predict)."""
        return self(batch["images"])

    # --- optimisation ---

    def _schedule_steps(self) -> int:
        """Cosine length: max_steps if set, else the trainer's estimate."""
        if self.hparams.max_steps:
            return int(self.hparams.max_steps)
        est = self.trainer.estimated_stepping_batches
        if not math.isfinite(est):
            raise ValueError(
                "EdgeDetector cannot size its cosine schedule (the trainer's step count is unknown, e.g. "
                "an iterable dataset without a length): pass max_steps"
            )
        return int(est)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no decay on norm weights and biases) with per-step linear warmup + cosine."""
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim <= 1]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr,
        )
        schedule = WarmupCosine(self.hparams.warmup_steps, self._schedule_steps(), self.hparams.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
