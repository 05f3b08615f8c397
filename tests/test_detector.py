"""EdgeDetector: training steps on contract batches, CenterNet overfit, mAP against hand computation, Trainer fit."""

from __future__ import annotations

import importlib.util

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from lightning_modules import EdgeDetector
from lightning_modules.detector import WarmupCosine, build_map_metric
from lightning_modules.networks import STRIDE, decode_centernet, encode_centernet_targets

# Class 0 is red, class 1 is blue; xyxy pixels in 64x48 frames.
OVERFIT = [
    [([8, 10, 30, 34], 0), ([40, 6, 58, 22], 1)],
    [([34, 20, 58, 42], 0)],
]
COLOURS = {0: (0.9, 0.1, 0.1), 1: (0.1, 0.2, 0.9)}


def contract_sample(height: int, width: int, objects: list[tuple[list[float], int]], seed: int = 0) -> dict:
    """One sample as a data module delivers it: grey noisy frame with a filled rectangle per object."""
    g = torch.Generator().manual_seed(seed)
    image = 0.5 + 0.05 * torch.randn(3, height, width, generator=g)
    for (x0, y0, x1, y1), label in objects:
        image[:, y0:y1, x0:x1] = torch.tensor(COLOURS[label])[:, None, None]
    boxes = torch.tensor([box for box, _ in objects], dtype=torch.float32).reshape(-1, 4)
    return {
        "image": image.clamp(0, 1),
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
        "labels": torch.tensor([label for _, label in objects], dtype=torch.int64),
        "key": f"sample-{seed:04d}",
    }


def collate(samples: list[dict]) -> dict:
    """The batch contract: stacked images, a list of target dicts, a list of keys."""
    return {
        "images": torch.stack([s["image"] for s in samples]),
        "targets": [{"boxes": s["boxes"], "labels": s["labels"]} for s in samples],
        "keys": [s["key"] for s in samples],
    }


def contract_batch(height: int = 48, width: int = 64) -> dict:
    """Two images, the second with no objects (boxes a float (0, 4) BoundingBoxes)."""
    return collate([contract_sample(height, width, OVERFIT[0], seed=0), contract_sample(height, width, [], seed=1)])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of two xyxy boxes."""
    lt, rb = torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])
    inter = (rb - lt).clamp(min=0).prod()
    return inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter)


def test_contract_batch_shapes() -> None:
    batch = contract_batch()
    assert batch["images"].shape == (2, 3, 48, 64)
    empty = batch["targets"][1]["boxes"]
    assert isinstance(empty, tv_tensors.BoundingBoxes) and empty.shape == (0, 4) and empty.dtype == torch.float32


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("arch", ["centernet", "ssdlite", "fasterrcnn_mobilenet"])
def test_training_step_and_inference_each_arch(arch: str) -> None:
    torch.manual_seed(0)
    # The torchvision detectors resize to 320 internally anyway: a small square input keeps them cheapest.
    size = (48, 64) if arch == "centernet" else (64, 64)
    batch = contract_batch(*size)
    model = EdgeDetector(num_classes=2, arch=arch, max_steps=10, warmup_steps=2)
    model.train()
    loss = model.training_step(batch, 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    dets = model.predict(batch["images"])
    assert len(dets) == 2 and model.training  # predict restores train mode
    for d in dets:
        assert d["boxes"].dtype == torch.float32 and d["boxes"].shape[-1] == 4
        assert len(d["boxes"]) == len(d["scores"]) == len(d["labels"]) <= model.hparams.max_detections
        assert d["labels"].dtype == torch.int64
        if len(d["labels"]):
            assert 0 <= d["labels"].min() and d["labels"].max() < 2


def test_default_model_size() -> None:
    n = sum(p.numel() for p in EdgeDetector().model.parameters())
    assert 500_000 <= n <= 700_000


def test_centernet_targets_peak_at_centres() -> None:
    boxes = torch.tensor([[8.0, 10.0, 30.0, 34.0]])
    enc = encode_centernet_targets([(boxes, torch.tensor([1]))], 2, (12, 16), gaussian_alpha=0.54)
    cx, cy = (8 + 30) / 2 / STRIDE, (10 + 34) / 2 / STRIDE  # 4.75, 5.5
    assert enc["heatmap"][0, 1, 5, 4] == 1.0 and enc["heatmap"].eq(1).sum() == 1
    assert enc["heatmap"][0, 0].abs().sum() == 0  # the other class stays empty
    assert enc["mask"].sum() == 1 and enc["mask"][0, 5, 4] == 1
    torch.testing.assert_close(enc["size"][0, :, 5, 4], torch.tensor([22.0, 24.0]) / STRIDE)
    torch.testing.assert_close(enc["offset"][0, :, 5, 4], torch.tensor([cx - 4, cy - 5]))


def test_decode_recovers_encoded_boxes() -> None:
    boxes = torch.tensor([[8.0, 10.0, 30.0, 34.0], [40.0, 6.0, 58.0, 22.0]])
    enc = encode_centernet_targets([(boxes, torch.tensor([0, 1]))], 2, (12, 16), gaussian_alpha=0.54)
    # Heatmap probabilities as logits: a perfect network's outputs.
    outputs = {
        "heatmap": torch.logit(enc["heatmap"].clamp(1e-6, 1 - 1e-6)),
        "size": enc["size"],
        "offset": enc["offset"],
    }
    (det,) = decode_centernet(outputs, [(48, 64)], score_threshold=0.5, max_detections=10)
    order = det["labels"].argsort()
    torch.testing.assert_close(det["boxes"][order], boxes)
    assert det["labels"][order].tolist() == [0, 1]


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_input_not_divisible_by_stride_is_padded() -> None:
    model = EdgeDetector(max_steps=10).eval()
    (det,) = model(torch.rand(1, 3, 45, 61))
    assert det["boxes"][:, 2].max() <= 61 and det["boxes"][:, 3].max() <= 45
    model.train()
    batch = collate([contract_sample(45, 61, [([5, 5, 20, 30], 0)])])
    assert torch.isfinite(model.training_step(batch, 0))


def test_labels_out_of_range_are_rejected() -> None:
    model = EdgeDetector(num_classes=1, max_steps=10)
    batch = contract_batch()  # has a label 1, out of range with one class
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\)"):
        model.compute_loss(batch["images"], batch["targets"])


def test_centernet_overfits_two_images() -> None:
    torch.manual_seed(0)
    batch = collate([contract_sample(48, 64, objs, seed=i) for i, objs in enumerate(OVERFIT)])
    model = EdgeDetector(num_classes=2, lr=5e-3, weight_decay=0.0, warmup_steps=5, max_steps=60)
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    model.train()
    losses = []
    for _ in range(60):
        loss = model.compute_loss(batch["images"], batch["targets"])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    # Typically 2.0 -> 0.01 over the 60 steps.
    assert sum(losses[-5:]) / 5 < 0.1 * sum(losses[:5]) / 5, losses

    dets = model.predict(batch["images"])
    for det, target in zip(dets, batch["targets"]):
        for box, label in zip(target["boxes"], target["labels"]):
            same = det["labels"] == label
            assert same.any(), f"class {label} not detected"
            # Detections come sorted by score: the first of the class must be the object (IoU is typically > 0.8).
            iou = box_iou(det["boxes"][same][0], box.as_subclass(torch.Tensor))
            assert iou > 0.5, (det, box)


def test_map_matches_hand_computation() -> None:
    """One image, two ground truths; a false positive outranks a loose (IoU 0.62) hit; the second truth is missed.

    Ranked detections: FP (0.95) then TP (0.9): precision [0, 1/2], recall [0, 1/2]. COCO interpolation takes at each
    of the 101 recall points r the best precision at recall >= r: 1/2 for r in 0.00..0.50 (51 points), 0 above, so
    AP = 0.5 * 51 / 101 wherever the hit counts. IoU 0.62 counts at thresholds 0.50, 0.55, 0.60 out of ten.
    """
    metric = build_map_metric()
    gt = tv_tensors.BoundingBoxes(
        torch.tensor([[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 40.0, 40.0]]), format="XYXY", canvas_size=(64, 64)
    )
    target = [{"boxes": gt.as_subclass(torch.Tensor), "labels": torch.tensor([0, 0])}]
    preds = [
        {
            "boxes": torch.tensor([[50.0, 0.0, 60.0, 10.0], [0.0, 0.0, 10.0, 6.2]]),
            "scores": torch.tensor([0.95, 0.9]),
            "labels": torch.tensor([0, 0]),
        }
    ]
    metric.update(preds, target)
    result = metric.compute()
    ap_hit = 0.5 * 51 / 101
    assert result["map_50"].item() == pytest.approx(ap_hit, abs=1e-6)
    assert result["map"].item() == pytest.approx(ap_hit * 3 / 10, abs=1e-6)
    assert result["map_75"].item() == pytest.approx(0.0, abs=1e-6)


def test_missing_faster_coco_eval_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "faster_coco_eval" else real(name, *a)
    )
    with pytest.raises(ImportError, match="pip install faster-coco-eval"):
        EdgeDetector()


def test_warmup_cosine_schedule() -> None:
    s = WarmupCosine(warmup=4, total=14, min_ratio=0.1)
    assert [s(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s(9) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
    assert s(14) == pytest.approx(0.1) and s(100) == pytest.approx(0.1)


def test_trainer_fast_dev_run(tmp_path) -> None:
    torch.manual_seed(0)
    samples = [contract_sample(48, 64, objs, seed=i) for i, objs in enumerate(OVERFIT + [[]])]
    loader = DataLoader(samples, batch_size=2, collate_fn=collate)
    model = EdgeDetector(num_classes=2, warmup_steps=1)  # max_steps None: schedule sized by the trainer
    trainer = L.Trainer(
        fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert 0.0 <= trainer.callback_metrics["val/map_50"] <= 1.0 and "val/map" in trainer.callback_metrics
    assert {"val/precision", "val/recall", "val/fp_per_image"} <= set(trainer.callback_metrics)
    preds = trainer.predict(model, loader)
    assert len(preds) == 2 and len(preds[0]) == 2 and set(preds[0][0]) == {"boxes", "scores", "labels"}

    trainer.save_checkpoint(tmp_path / "detector.ckpt")
    loaded = EdgeDetector.load_from_checkpoint(tmp_path / "detector.ckpt")
    assert loaded.hparams.num_classes == 2
    images = next(iter(loader))["images"]
    torch.testing.assert_close(loaded.predict(images)[0]["scores"], model.predict(images)[0]["scores"])
