"""The detection networks EdgeDetector trains: a tiny CenterNet (default) and torchvision detectors from scratch.

Networks take images float [B, 3, H, W]; CenterNet's inputs are centred on 0 and padded to a multiple of STRIDE by the
caller. This module also holds what is specific to each network rather than to training: CenterNet's dense targets,
its loss and the decoding of its heatmaps into Detections (per image: xyxy pixel `boxes`, `scores`, 0-based `labels`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypedDict, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
            nn.Sequential(_conv_bn_relu(w[i - 1], w[i], 2), _conv_bn_relu(w[i], w[i])) for i in range(2, 5)
        )
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


def encode_centernet_targets(
    targets: list[tuple[Tensor, Tensor]], num_classes: int, out_hw: tuple[int, int], gaussian_alpha: float
) -> dict[str, Tensor]:
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


def decode_centernet(
    outputs: dict[str, Tensor], image_sizes: list[tuple[int, int]], score_threshold: float, max_detections: int
) -> list[Detections]:
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
        model = detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=num_classes + 1
        )
        # Set after building: the ssdlite builder also forwards its kwargs to the backbone, which rejects these.
        model.score_thresh = score_threshold
        model.detections_per_img = max_detections
        return model
    if arch == "fasterrcnn_mobilenet":
        return detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=num_classes + 1,
            box_score_thresh=score_threshold,
            box_detections_per_img=max_detections,
        )
    raise ValueError(f"unknown torchvision arch {arch!r}; valid: 'ssdlite', 'fasterrcnn_mobilenet'")
