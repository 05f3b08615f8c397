"""tools/train.py: LightningCLI over EdgeDetector and a data module chosen by class path, with the example configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from shard_fixtures import write_dataset

from lightning_modules.cli import main
from lightning_modules.data import JPEGDataModule, RINRDataModule

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "rinr": (REPO / "configs" / "rinr.yaml", RINRDataModule),
    "jpeg": (REPO / "configs" / "jpeg.yaml", JPEGDataModule),
}


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """LightningCLI is given its arguments; pytest's own must not look like extra command-line arguments."""
    monkeypatch.setattr(sys, "argv", ["train.py"])


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """8 tiny frames (classes a, b) in shards of 4, as .rinr records and as JPEG."""
    root = tmp_path_factory.mktemp("train-cli")
    for codec in CONFIGS:
        write_dataset(root / codec, count=8, shard_size=4, codec=codec)
    return {codec: root / codec for codec in CONFIGS}


def small_run(config: Path, folder: Path, root: Path, *extra: str) -> list[str]:
    """Arguments for a 1-step CPU fit of `config` on `folder`, writing nothing outside `root`."""
    return [
        "fit",
        "--config",
        str(config),
        f"--data.init_args.train={folder}",
        f"--data.init_args.val={folder}",
        "--data.init_args.batch_size=4",
        "--data.init_args.num_workers=0",
        "--model.num_classes=2",
        "--trainer.max_steps=1",
        "--trainer.accelerator=cpu",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
        *extra,
    ]


def test_help_runs_from_a_checkout():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "fit" in out.stdout and "--config" in out.stdout and "RINRDataModule" in out.stdout


def test_configs_differ_only_in_the_data_module_and_its_shards():
    rinr, jpeg = (yaml.safe_load(CONFIGS[c][0].read_text()) for c in ("rinr", "jpeg"))
    assert rinr["data"]["class_path"] == "lightning_modules.data.RINRDataModule"
    assert jpeg["data"]["class_path"] == "lightning_modules.data.JPEGDataModule"
    for cfg in (rinr, jpeg):
        del cfg["data"]["class_path"]
        for split in ("train", "val"):
            path = cfg["data"]["init_args"][split]
            cfg["data"]["init_args"][split] = path.replace("-rinr/", "-CODEC/").replace("-jpeg/", "-CODEC/")
    assert rinr == jpeg


@pytest.mark.parametrize("codec", list(CONFIGS))
def test_one_step_with_each_config(codec, folders, tmp_path):
    config, module = CONFIGS[codec]
    cli = main(small_run(config, folders[codec], tmp_path))
    assert type(cli.datamodule) is module
    assert cli.trainer.global_step == 1
    assert cli.model.hparams.num_classes == 2


def test_wrong_codec_for_the_config_fails(folders, tmp_path):
    with pytest.raises(Exception, match="use JPEGDataModule"):
        main(small_run(CONFIGS["rinr"][0], folders["jpeg"], tmp_path))


def test_class_count_is_checked_against_the_manifest(folders, tmp_path):
    with pytest.raises(ValueError, match="num_classes=2"):
        main(small_run(CONFIGS["jpeg"][0], folders["jpeg"], tmp_path, "--model.num_classes=1"))
