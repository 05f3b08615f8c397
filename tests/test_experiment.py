"""rinr_bench.experiment: paired short trainings on shard folders and evaluation on reference shards."""

from __future__ import annotations

import math

import pytest
import torch
from shard_fixtures import write_dataset

from lightning_modules.data import JPEGDataModule, RINRDataModule
from rinr_bench.experiment import TrainSettings, detect, evaluate, loader_speed, train_and_evaluate, train_detector

SETTINGS = TrainSettings(steps=2, batch_size=4, warmup_steps=1, accelerator="cpu", augment=True)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """8 tiny frames as .rinr records and as JPEG (shards of 4)."""
    root = tmp_path_factory.mktemp("experiment")
    for codec in ("rinr", "jpeg"):
        write_dataset(root / codec, count=8, shard_size=4, codec=codec)
    return {"rinr": root / "rinr", "jpeg": root / "jpeg"}


@pytest.mark.parametrize("codec, module", [("rinr", RINRDataModule), ("jpeg", JPEGDataModule)])
def test_train_and_evaluate_with_each_module(folders, codec, module):
    run = train_and_evaluate(module, folders[codec], folders["jpeg"], SETTINGS, seed=1)
    assert run.seed == 1 and run.images == 8 and run.train_s > 0
    assert 0.0 <= run.map_50 <= 1.0 and (0.0 <= run.map <= 1.0 or math.isnan(run.map))


def test_same_seed_same_model(folders):
    a, _ = train_detector(JPEGDataModule, folders["jpeg"], SETTINGS, seed=3)
    b, _ = train_detector(JPEGDataModule, folders["jpeg"], SETTINGS, seed=3)
    c, _ = train_detector(JPEGDataModule, folders["jpeg"], SETTINGS, seed=4)
    assert a.hparams.num_classes == 2  # from the manifest
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_evaluate_reports_both_map_values(folders):
    model, _ = train_detector(RINRDataModule, folders["rinr"], SETTINGS, seed=0)
    scores = evaluate(model, folders["jpeg"], SETTINGS)
    assert set(scores) == {"map_50", "map", "precision", "recall", "fp_per_image"}
    assert 0.0 <= scores["precision"] <= 1.0 and 0.0 <= scores["recall"] <= 1.0 and scores["fp_per_image"] >= 0.0


def test_detect_returns_every_frame_with_its_truth(folders):
    model, _ = train_detector(RINRDataModule, folders["rinr"], SETTINGS, seed=0)
    frames = detect(model, folders["jpeg"], SETTINGS)
    assert [f.key for f in frames] == [f"frame_{i:03d}" for i in range(8)]  # shard order, nothing dropped
    for f in frames:
        assert f.image.shape[0] == 3 and 0.0 <= float(f.image.min()) and float(f.image.max()) <= 1.0
        assert len(f.boxes) == len(f.labels)
        assert (f.detections["scores"] >= model.hparams.score_threshold).all()
        assert f.detections["boxes"].shape == (len(f.detections["scores"]), 4)
    assert sum(len(f.boxes) for f in frames) > 0


def test_loader_speed_counts_a_full_epoch(folders):
    assert loader_speed(RINRDataModule, folders["rinr"], SETTINGS) > 0
