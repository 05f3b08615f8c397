"""Edge object detector as a Lightning module: a tiny CenterNet by default, torchvision detectors as options.

Every architecture takes the batch contract of the rinr-data data modules: `images` float [B, 3, H, W] in [0, 1],
`targets` a list of B dicts with `boxes` (`tv_tensors.BoundingBoxes`, XYXY pixels) and `labels` (int64 class ids in
[0, num_classes)), `keys` a list of B strings. Inference returns, per image, a dict of xyxy pixel `boxes`, `scores`
and 0-based `labels`, whatever the architecture.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, get_args

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from .detection_metrics import OPERATING_THRESHOLD, DetectionErrors

Arch = Literal["centernet", "ssdlite", "fasterrcnn_mobilenet"]
ARCHS: tuple[str, ...] = get_args(Arch)
STRIDE = 4  # CenterNet output stride: one heatmap cell per 4x4 input pixels


class Detections(TypedDict):
    """Detections of one image: `boxes` float [K, 4] xyxy pixels, `scores` float [K], `labels` int64 [K]."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


# ---------------------------------------------------------------------------------------------------------------------
# CenterNet


@dataclass(frozen=True)
class CenterNetConfig:
    """Shape and loss of the tiny CenterNet.

    Args:
        num_classes: heatmap channels; labels are 0-based class ids.
        widths: backbone channels at strides 2, 4, 8, 16, 32.
        neck_channels: channels of the top-down neck that brings strides 32..4 back to stride 4.
        head_channels: hidden channels of each head's 3x3 conv.
        heatmap_prior: initial foreground probability of every heatmap cell (sets the logit bias).
        gaussian_alpha: splat sigma along each axis is alpha * box side / 6 (TTFNet's elliptical gaussians, which suit
            tall pedestrians better than CenterNet's round ones).
        size_weight: weight of the (w, h) L1 loss, measured in heatmap cells.
        offset_weight: weight of the sub-cell centre offset L1 loss.
    """

    num_classes: int = 1
    widths: tuple[int, int, int, int, int] = (16, 24, 48, 96, 128)
    neck_channels: int = 64
    head_channels: int = 48
    heatmap_prior: float = 0.1
    gaussian_alpha: float = 0.54
    size_weight: float = 0.1
    offset_weight: float = 1.0


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """3x3 conv, ReLU, 1x1 conv to the output channels."""
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, cout, 1))


class CenterNet(nn.Module):
    """Plain conv backbone to stride 32, a top-down neck back to stride 4, heatmap/size/offset heads."""

    def __init__(self, cfg: CenterNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.stem = nn.Sequential(_conv_bn_relu(3, w[0], 2), _conv_bn_relu(w[0], w[1], 2), _conv_bn_relu(w[1], w[1]))
        self.stages = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(w[i - 1], w[i], 2), _conv_bn_relu(w[i], w[i])) for i in range(2, 5))
        self.lateral = nn.ModuleList(nn.Conv2d(c, cfg.neck_channels, 1) for c in w[1:])
        self.smooth = nn.ModuleList(_conv_bn_relu(cfg.neck_channels, cfg.neck_channels) for _ in range(3))
        self.heatmap = _head(cfg.neck_channels, cfg.head_channels, cfg.num_classes)
        self.size = _head(cfg.neck_channels, cfg.head_channels, 2)
        self.offset = _head(cfg.neck_channels, cfg.head_channels, 2)
        # Start every cell at the prior: a zero bias (p = 0.5 everywhere) makes the first focal-loss steps huge.
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - cfg.heatmap_prior) / cfg.heatmap_prior))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Raw head outputs at stride 4: `heatmap` logits [B, C, h, w], `size` and `offset` [B, 2, h, w]."""
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        y = self.lateral[-1](feats[-1])
        for i in reversed(range(3)):
            lat = self.lateral[i](feats[i])
            # Interpolate to the exact lateral size: odd sizes at strides 8..32 then need no extra padding.
            y = self.smooth[i](lat + F.interpolate(y, size=lat.shape[-2:], mode="nearest"))
        return {"heatmap": self.heatmap(y), "size": self.size(y), "offset": self.offset(y)}


def build_centernet(cfg: CenterNetConfig) -> CenterNet:
    """The default edge model (about 0.64M parameters with the default config and one class)."""
    return CenterNet(cfg)


def encode_centernet_targets(targets: list[tuple[Tensor, Tensor]], num_classes: int, out_hw: tuple[int, int],
                             gaussian_alpha: float) -> dict[str, Tensor]:
    """Dense CenterNet targets at stride 4 from per-image (xyxy pixel boxes, 0-based labels).

    Returns `heatmap` [B, C, h, w] (gaussian splats, exactly 1 at each centre cell), `size` and `offset` [B, 2, h, w]
    and `mask` [B, h, w] (1 at centre cells, where size and offset are regressed).
    """
    h, w = out_hw
    device = targets[0][0].device if targets else torch.device("cpu")
    b = len(targets)
    heat = torch.zeros(b, num_classes, h, w, device=device)
    size = torch.zeros(b, 2, h, w, device=device)
    offset = torch.zeros(b, 2, h, w, device=device)
    mask = torch.zeros(b, h, w, device=device)
    xs = torch.arange(w, device=device, dtype=torch.float32)
    ys = torch.arange(h, device=device, dtype=torch.float32)
    for i, (boxes, labels) in enumerate(targets):
        if boxes.numel() == 0:
            continue
        boxes = boxes.float() / STRIDE
        wh = boxes[:, 2:] - boxes[:, :2]
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        cell = centre.floor()
        cell[:, 0].clamp_(0, w - 1)
        cell[:, 1].clamp_(0, h - 1)
        # The floor keeps a box narrower than a cell from collapsing to a zero-width splat (division by zero).
        sigma = (gaussian_alpha * wh / 6).clamp(min=0.1)
        gx = torch.exp(-((xs[None] - cell[:, :1]) ** 2) / (2 * sigma[:, :1] ** 2))  # [N, w]
        gy = torch.exp(-((ys[None] - cell[:, 1:]) ** 2) / (2 * sigma[:, 1:] ** 2))  # [N, h]
        # Splats are centred on the integer cell, so the peak is exactly 1: the focal loss's positive test relies on it.
        splats = (gy[:, :, None] * gx[:, None, :]).flatten(1)  # [N, h * w]
        heat[i].view(num_classes, h * w).scatter_reduce_(0, labels[:, None].expand(-1, h * w), splats, "amax")
        cx, cy = cell[:, 0].long(), cell[:, 1].long()
        # Two boxes sharing a centre cell: one of them wins; either is a valid regression target there.
        size[i, :, cy, cx] = wh.T
        offset[i, :, cy, cx] = (centre - cell).T
        mask[i, cy, cx] = 1.0
    return {"heatmap": heat, "size": size, "offset": offset, "mask": mask}


def centernet_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed and divided by the number of centres."""
    logits = logits.float()
    pos = target.eq(1).float()
    p = logits.sigmoid()
    # logsigmoid instead of log(p): no clamping needed where the logits saturate.
    pos_loss = F.logsigmoid(logits) * (1 - p).pow(2) * pos
    neg_loss = F.logsigmoid(-logits) * p.pow(2) * (1 - target).pow(4) * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def _masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean L1 over the coordinates at centre cells."""
    m = mask[:, None]
    return ((pred.float() - target).abs() * m).sum() / (2 * mask.sum()).clamp(min=1)


def centernet_loss(outputs: dict[str, Tensor], enc: dict[str, Tensor], cfg: CenterNetConfig) -> dict[str, Tensor]:
    """Weighted total (`loss`) and its parts (`heatmap`, `size`, `offset`)."""
    parts = {
        "heatmap": centernet_focal_loss(outputs["heatmap"], enc["heatmap"]),
        "size": _masked_l1(outputs["size"], enc["size"], enc["mask"]),
        "offset": _masked_l1(outputs["offset"], enc["offset"], enc["mask"]),
    }
    parts["loss"] = parts["heatmap"] + cfg.size_weight * parts["size"] + cfg.offset_weight * parts["offset"]
    return parts


def decode_centernet(outputs: dict[str, Tensor], image_sizes: list[tuple[int, int]], score_threshold: float,
                     max_detections: int) -> list[Detections]:
    """Peaks of the heatmap (3x3 max-pool), top-k over classes and cells, threshold, boxes clipped to each image."""
    heat = outputs["heatmap"].float().sigmoid()
    b, c, h, w = heat.shape
    # A cell is a peak when it is the max of its 3x3 neighbourhood: the anchor-free replacement for NMS.
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    scores, idx = peaks.flatten(1).topk(min(max_detections, c * h * w))
    labels = idx // (h * w)
    pix = idx % (h * w)
    gather = pix[:, None].expand(-1, 2, -1)
    wh = outputs["size"].float().flatten(2).gather(2, gather).clamp(min=0) * STRIDE  # [B, 2, K]
    off = outputs["offset"].float().flatten(2).gather(2, gather)
    cx = ((pix % w).float() + off[:, 0]) * STRIDE
    cy = ((pix // w).float() + off[:, 1]) * STRIDE
    boxes = torch.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], dim=-1)
    out: list[Detections] = []
    for i, (ih, iw) in enumerate(image_sizes):
        keep = scores[i] >= score_threshold
        bx = boxes[i][keep]
        bx[:, 0::2] = bx[:, 0::2].clamp(0, iw)
        bx[:, 1::2] = bx[:, 1::2].clamp(0, ih)
        out.append({"boxes": bx, "scores": scores[i][keep], "labels": labels[i][keep]})
    return out


# ---------------------------------------------------------------------------------------------------------------------
# torchvision detectors, from scratch


def build_torchvision_detector(arch: str, num_classes: int, score_threshold: float, max_detections: int) -> nn.Module:
    """ssdlite320_mobilenet_v3_large or fasterrcnn_mobilenet_v3_large_320_fpn with random weights.

    torchvision reserves class 0 for background, so the model has num_classes + 1 classes; EdgeDetector shifts labels.
    """
    from torchvision.models import detection

    if arch == "ssdlite":
        model = detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                        num_classes=num_classes + 1)
        # Set after building: the ssdlite builder also forwards its kwargs to the backbone, which rejects these.
        model.score_thresh = score_threshold
        model.detections_per_img = max_detections
        return model
    if arch == "fasterrcnn_mobilenet":
        return detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=num_classes + 1,
            box_score_thresh=score_threshold, box_detections_per_img=max_detections)
    raise ValueError(f"unknown torchvision arch {arch!r}; valid: 'ssdlite', 'fasterrcnn_mobilenet'")


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
        raise ImportError("EdgeDetector evaluates with the faster_coco_eval backend of torchmetrics' "
                          "MeanAveragePrecision, but `faster_coco_eval` is not installed: pip install faster-coco-eval")
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

    def __init__(self, num_classes: int = 1, arch: Arch = "centernet", lr: float = 2e-3, weight_decay: float = 1e-2,
                 warmup_steps: int = 100, max_steps: int | None = None, min_lr_ratio: float = 0.01,
                 score_threshold: float = 0.05, max_detections: int = 100,
                 operating_threshold: float = OPERATING_THRESHOLD) -> None:
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
        enc = encode_centernet_targets(plain, self.hparams.num_classes, tuple(outputs["heatmap"].shape[-2:]),
                                       self.centernet_cfg.gaussian_alpha)
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
            raise ValueError("EdgeDetector cannot size its cosine schedule (the trainer's step count is unknown, e.g. "
                             "an iterable dataset without a length): pass max_steps")
        return int(est)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no decay on norm weights and biases) with per-step linear warmup + cosine."""
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.hparams.lr)
        schedule = WarmupCosine(self.hparams.warmup_steps, self._schedule_steps(), self.hparams.min_lr_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
