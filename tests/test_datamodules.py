"""RINRDataModule and JPEGDataModule: one batch contract, codec checks, Trainer fit, mid-epoch resume, DDP split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import smooth_frame
from shard_fixtures import write_dataset
from torch import nn
from torchvision import tv_tensors

from lightning_modules.data import CodecDataset, JPEGDataModule, RINRDataModule
from rinr_data.errors import FormatError
from rinr_data.pipeline.loader import RINRLoader

REPO = Path(__file__).resolve().parents[1]
MODULES = {"rinr": RINRDataModule, "jpeg": JPEGDataModule}
QUIET = dict(
    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The same 10 frames (shards of 3) as .rinr records and as JPEG."""
    root = tmp_path_factory.mktemp("shards")
    write_dataset(root / "rinr", count=10, shard_size=3, codec="rinr")
    write_dataset(root / "jpeg", count=10, shard_size=3, codec="jpeg")
    return {"rinr": root / "rinr", "jpeg": root / "jpeg"}


def module(codec: str, folder: Path, **kwargs) -> RINRDataModule | JPEGDataModule:
    """The data module of `codec` with the tests' defaults: the class is the only difference between codecs."""
    options = dict(train=folder, val=folder, test=folder, batch_size=4, num_workers=0, device="cpu", seed=1)
    return MODULES[codec](**{**options, **kwargs})


class KeyRecorder(L.LightningModule):
    """Smallest module that consumes the batch dict and records the keys of every step."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.train_keys: list[list[str]] = []
        self.val_keys: list[list[str]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.train_keys.append(list(batch["keys"]))
        boxes = sum(float(t["boxes"].sum()) for t in batch["targets"])
        return self.conv(batch["images"]).mean() + 0 * boxes

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_keys.append(list(batch["keys"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


# --- batch contract ---------------------------------------------------------------------------------------------


def test_both_modules_give_the_same_batches(folders):
    batches = {}
    for codec in MODULES:
        dm = module(codec, folders[codec], image_size=(24, 24))
        dm.setup("fit")
        batches[codec] = (next(iter(dm.val_dataloader())), next(iter(dm.train_dataloader())))
    (rv, rt), (jv, jt) = batches["rinr"], batches["jpeg"]
    for a, b in ((rv, jv), (rt, jt)):
        assert set(a) == set(b) == {"images", "targets", "keys"}
        assert a["images"].shape == b["images"].shape == (4, 3, 24, 24)
        assert a["images"].dtype == b["images"].dtype == torch.float32
        assert 0 <= float(b["images"].min()) and float(b["images"].max()) <= 1
        for ta, tb in zip(a["targets"], b["targets"]):
            assert set(ta) == set(tb) == {"boxes", "labels"}
            assert type(ta["boxes"]) is type(tb["boxes"]) is tv_tensors.BoundingBoxes
            assert ta["boxes"].format == tb["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
            assert ta["boxes"].dtype == tb["boxes"].dtype == torch.float32
            assert ta["labels"].dtype == tb["labels"].dtype == torch.int64
    # Validation is in order and never augmented: the same frames give the same keys, boxes and labels.
    assert rv["keys"] == jv["keys"] == ["frame_000", "frame_001", "frame_002", "frame_003"]
    for ta, tb in zip(rv["targets"], jv["targets"]):
        assert torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])


def test_train_is_shuffled_and_augmented_val_is_not(folders):
    dm = module("rinr", folders["rinr"], batch_size=10)
    assert dm.augment is not None
    train = next(iter(dm.train_dataloader()))
    val, test = next(iter(dm.val_dataloader())), next(iter(dm.test_dataloader()))
    assert sorted(train["keys"]) == val["keys"] == test["keys"] and train["keys"] != val["keys"]
    assert torch.equal(val["images"], test["images"])
    plain = next(iter(module("rinr", folders["rinr"], batch_size=10, augment=False).train_dataloader()))
    assert plain["keys"] == train["keys"] and not torch.equal(plain["images"], train["images"])


def test_classes_come_from_the_manifest(folders):
    assert module("jpeg", folders["jpeg"]).classes == ["a", "b"]
    assert RINRDataModule(sorted(str(p) for p in folders["rinr"].glob("*.tar"))).classes is None


def test_missing_split_is_a_clear_error(folders):
    with pytest.raises(ValueError, match="no 'val' shards"):
        RINRDataModule(folders["rinr"], num_workers=0, device="cpu").val_dataloader()


# --- codec checks -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec, wrong", [("rinr", "jpeg"), ("jpeg", "rinr")])
def test_wrong_codec_names_the_shard(folders, codec, wrong):
    with pytest.raises(FormatError, match=r"shard-000000\.tar: the manifest says every shard holds"):
        module(codec, folders[wrong]).train_dataloader()
    # Without a manifest the first sample read is checked, whatever on_error says.
    urls = sorted(str(p) for p in folders[wrong].glob("*.tar"))
    loader = module(codec, urls, val=urls, on_error="skip").val_dataloader()
    other = "JPEGDataModule" if wrong == "jpeg" else "RINRDataModule"
    with pytest.raises(FormatError, match=rf"shard-000000\.tar \(sample 'frame_000'\): holds .*use {other}"):
        next(iter(loader))


# --- trainer integration ----------------------------------------------------------------------------------------


def test_setup_takes_rank_world_and_device_from_the_trainer(folders):
    dm = module("rinr", folders["rinr"], device="auto", batch_size=2)
    dm.trainer = SimpleNamespace(
        global_rank=1, world_size=2, current_epoch=3, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    for loader in (train, val):
        assert (loader.dataset.rank, loader.dataset.world_size, loader.dataset.equal_batches) == (1, 2, True)
        assert loader.device == torch.device("cpu")
    assert train.epoch == 3  # a reloaded loader continues the trainer's epoch
    dm.trainer.world_size = 5  # 4 shards: one rank would get none and every rank's equal quota would be 0
    dm.setup("fit")
    with pytest.raises(ValueError, match="4 shards for 5 ranks"):
        dm.val_dataloader()


def test_uncounted_shards_warn_that_lightning_resume_skips_a_batch(folders):
    urls = sorted(str(p) for p in folders["rinr"].glob("*.tar"))
    trainer = SimpleNamespace(
        global_rank=0, world_size=1, current_epoch=0, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )
    counted = module("rinr", urls)  # local shards without a manifest are counted: a length, no warning
    counted.trainer = trainer
    counted.setup("fit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(counted.train_dataloader()) == 3  # 10 frames in batches of 4, the last one partial
    assert not [w for w in caught if "sample count" in str(w.message)]
    remote = module("rinr", ["http://127.0.0.1:9/shard-000000.tar", *urls])  # never fetched here
    remote.trainer = trainer
    remote.setup("fit")
    with pytest.warns(UserWarning, match="1 train shard.*no sample count.*resume skips"):
        remote.train_dataloader()


def _detector():
    try:
        from lightning_modules import EdgeDetector

        return EdgeDetector(num_classes=2, warmup_steps=1)
    except Exception:  # the detector is optional here: any module that consumes the batch dict will do
        return KeyRecorder()


@pytest.mark.parametrize("codec", list(MODULES))
def test_fast_dev_run(folders, codec):
    torch.manual_seed(0)
    dm = module(codec, folders[codec], batch_size=2, image_size=(32, 32), device="auto")
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", **QUIET)
    trainer.fit(_detector(), datamodule=dm)
    assert trainer.global_step == 2
    assert dm.rank == 0 and dm.world_size == 1 and dm.device == torch.device("cpu")


@pytest.mark.parametrize("workers,bare", [(0, False), (2, False), (0, True)])
def test_lightning_mid_epoch_resume(folders, tmp_path, workers, bare):
    # 10 frames in batches of 2: 5 steps an epoch, 10 in two; interrupt inside epoch 0 and inside epoch 1.
    # bare: a list of local shards without the manifest, whose counts the dataset takes from the tar headers.
    train = sorted(str(p) for p in folders["rinr"].glob("*.tar")) if bare else folders["rinr"]

    def fit(max_steps: int = -1, ckpt: Path | None = None, callbacks: tuple = ()) -> KeyRecorder:
        model = KeyRecorder()
        dm = module("rinr", train, val=None, batch_size=2, num_workers=workers)
        trainer = L.Trainer(
            accelerator="cpu",
            max_epochs=2,
            max_steps=max_steps,
            callbacks=list(callbacks),
            limit_val_batches=0,
            **{**QUIET, "enable_checkpointing": bool(callbacks)},
        )
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
        return model

    reference = fit().train_keys
    assert len(reference) == 10 and reference[:5] != reference[5:]
    for k in (3, 7):
        saver = L.pytorch.callbacks.ModelCheckpoint(tmp_path / str(k), every_n_train_steps=k, save_top_k=-1)
        head = fit(max_steps=k, callbacks=(saver,)).train_keys
        ckpt = next((tmp_path / str(k)).glob("*.ckpt"))
        assert "combined_loader" in torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]["state_dict"]
        tail = fit(ckpt=ckpt).train_keys
        assert head == reference[:k]
        assert tail == reference[k:]


DDP_SCRIPT = """
import json, sys
sys.path[:0] = [{repo!r}]
import lightning as L, torch
from lightning_modules.data import JPEGDataModule, RINRDataModule

class Recorder(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        self.seen = {{"train": [], "val": []}}
    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch["keys"])
        return self.conv(batch["images"]).mean()
    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch["keys"])
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

if __name__ == "__main__":
    for name, cls in (("rinr", RINRDataModule), ("jpeg", JPEGDataModule)):
        folder = {folders!r}[name]
        dm = cls(folder, val=folder, batch_size=2, num_workers=0, seed=4)
        model = Recorder()
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, num_sanity_val_steps=0,
                            logger=False, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False)
        trainer.fit(model, datamodule=dm)
        with open(f"{out}/{{name}}-rank{{trainer.global_rank}}.json", "w") as f:
            json.dump({{"rank": dm.rank, "world": dm.world_size, **model.seen}}, f)
"""


def test_ddp_two_cpu_ranks_split_the_data(folders, tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(
        DDP_SCRIPT.format(repo=str(REPO), folders={k: str(v) for k, v in folders.items()}, out=str(tmp_path))
    )
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    for name in MODULES:
        logs = [json.loads((tmp_path / f"{name}-rank{r}.json").read_text()) for r in range(2)]
        assert [(log["rank"], log["world"]) for log in logs] == [(0, 2), (1, 2)]
        for split in ("train", "val"):
            a, b = ([k for batch in log[split] for k in batch] for log in logs)
            assert len(logs[0][split]) == len(logs[1][split]) > 0, (name, split)
            assert not set(a) & set(b) and len(set(a)) == len(a) and len(set(b)) == len(b)
            assert all(len(batch) == 2 for log in logs for batch in log[split])


# --- device-side JPEG decode ------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_gpu_decode_without_cuda_is_a_clear_error(folders):
    with pytest.raises(ValueError, match="gpu_decode=True .* CUDA is not available"):
        JPEGDataModule(folders["jpeg"], gpu_decode=True)


def test_encoded_jpeg_path_matches_pillow(folders):
    # gpu_decode's worker/main-process split, run with torchvision's CPU decoder: same order, same pixels.
    def loader(encoded: bool) -> RINRLoader:
        ds = CodecDataset(
            folders["jpeg"], batch_size=3, seed=2, device="cpu", codecs=("jpeg",), owner="test", encoded_jpeg=encoded
        )
        return RINRLoader(ds)  # kept JPEG bytes are decoded by the loader's device decode, images by Pillow

    pillow, device = list(loader(False)), list(loader(True))
    assert [b["keys"] for b in pillow] == [b["keys"] for b in device]
    for a, b in zip(pillow, device):
        torch.testing.assert_close(a["images"], b["images"], atol=3 / 255, rtol=0)
        assert all(torch.equal(ta["boxes"], tb["boxes"]) for ta, tb in zip(a["targets"], b["targets"]))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of float images in [0, 1]."""
    return float(10 * torch.log10(1 / torch.mean((a - b) ** 2)))


@pytest.mark.gpu
def test_gpu_decode_on_cuda(folders):
    dm = JPEGDataModule(
        folders["jpeg"], val=folders["jpeg"], batch_size=4, num_workers=0, gpu_decode=True, device="cuda"
    )
    batch = next(iter(dm.val_dataloader()))
    reference = next(iter(module("jpeg", folders["jpeg"]).val_dataloader()))
    assert batch["images"].is_cuda and batch["keys"] == reference["keys"]
    # nvJPEG upsamples 4:2:0 chroma differently from libjpeg: on an H200 (torchvision 0.26) these 16x20 frames came
    # out up to 21 levels apart, 32.5 dB from the originals against Pillow's 37.6. So the test checks what would be
    # our bug (a wrong colour conversion or channel order: far below 30 dB), not equality with Pillow.
    originals = (
        torch.stack(
            [
                torch.from_numpy(smooth_frame(16, 20, seed=int(k.rsplit("_", 1)[1]))).permute(2, 0, 1)
                for k in batch["keys"]
            ]
        ).float()
        / 255
    )
    gpu, cpu = psnr(batch["images"].cpu(), originals), psnr(reference["images"], originals)
    assert gpu > 30 and cpu > 30, (gpu, cpu)
