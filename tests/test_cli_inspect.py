"""rinr-inspect and rinr-decode on encoded tiny datasets: report contents, --verify failures, decode round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import webdataset
from tiny_datasets import (
    CLASSES,
    FAST,
    TRUTH,
    one_torch_thread,  # noqa: F401 - autouse fixture
    write_coco,
)

from rinr_data import shards
from rinr_data.cli import decode as decode_cli
from rinr_data.cli import encode as encode_cli
from rinr_data.cli import inspect_shards
from rinr_data.sources import open_source


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> Path:
    """The tiny COCO set as rinr shards (2 shards), encoded once for the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("enc")
    src = write_coco(tmp / "src")
    assert encode_cli.main([str(src), str(tmp / "out"), *FAST, "--shard-size", "2", "--batch", "2"]) == 0
    torch.set_num_threads(before)
    return tmp / "out"


def test_inspect_reports_paper_inr_shapes(tmp_path, capsys):
    src = write_coco(tmp_path / "src")
    assert encode_cli.main([str(src), str(tmp_path / "out"), *FAST, "--preset", "paper"]) == 0
    capsys.readouterr()
    code, rep, _ = run_inspect(capsys, str(tmp_path / "out"), "--verify")
    assert code == 0 and rep["verify"]["ok"]
    assert rep["inr_shapes"]["background"] == {"28x10": 3}
    assert rep["inr_shapes"]["objects"] == {"10x3": 6}  # 1 + 2 + 3 boxes, all small


def run_inspect(capsys, *args: str) -> tuple[int, dict, str]:
    """Exit code, JSON report and stderr of rinr-inspect."""
    code = inspect_shards.main([*args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_inspect_reports_counts_shapes_and_classes(encoded, capsys):
    code, rep, err = run_inspect(capsys, str(encoded), "--verify")
    assert code == 0 and rep["verify"] == {"ok": True, "decoded": 3, "failures": []}
    assert rep["shards"] == 2 and rep["samples"] == 3 and rep["codecs"] == {"rinr": 3}
    assert rep["inr_shapes"]["background"] == {"grid 6 levels (2 box-only), mlp 16-16": 3}  # the default preset
    budget = rep["grid_bytes_per_record"]
    assert set(budget) == {"latents in boxes", "latents outside boxes", "synthesis", "other"}
    assert sum(budget.values()) == pytest.approx(rep["image_bytes"]["mean"])
    assert rep["inr_shapes"]["objects"] == {}
    assert rep["classes"] == {"cat": 3, "dog": 3}
    assert rep["object_psnr"]["n"] == 3 and rep["image_sizes"] == {"32x24": 3}
    assert rep["bytes_per_sample"] == pytest.approx(rep["shard_bytes"] / 3)


def test_inspect_human_readable_output_and_shard_files(encoded, capsys):
    assert inspect_shards.main([str(encoded / "shard-000001.tar")]) == 0
    out = capsys.readouterr().out
    assert (
        "samples: 1" in out
        and ("INR shapes (SIREN width x depth, or grid): background grid 6 levels (2 box-only), mlp 16-16: 1") in out
    )
    assert "grid record bytes (mean, by the coding models): latents in boxes" in out
    assert "boxes per class: cat (1), dog (2)" in out and "object PSNR: min" in out


def copy_out(encoded: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(encoded, out)
    return out


def test_verify_names_a_shard_whose_checksum_differs(encoded, tmp_path, capsys):
    out = copy_out(encoded, tmp_path)
    data = bytearray((out / "shard-000001.tar").read_bytes())
    data[-1] ^= 1  # in the tar's zero padding: still a readable shard, but not the one the manifest lists
    (out / "shard-000001.tar").write_bytes(bytes(data))
    code, rep, err = run_inspect(capsys, str(out), "--verify")
    assert code == 1 and rep["verify"]["ok"] is False
    assert rep["verify"]["failures"][0].startswith("shard-000001.tar: sha256")


def test_verify_names_the_sample_whose_record_is_corrupt(encoded, tmp_path, capsys):
    out = copy_out(encoded, tmp_path)
    samples = list(shards.iter_shard(out / "shard-000000.tar"))
    blob = bytearray(samples[1]["rinr"])
    blob[len(blob) // 2] ^= 0xFF
    samples[1]["rinr"] = bytes(blob)
    with webdataset.TarWriter(str(out / "shard-000000.tar"), encoder=False) as w:
        for s in samples:
            w.write({k: v for k, v in s.items() if k != "__shard__"})
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = shards.sha256_file(out / "shard-000000.tar")  # only the record is bad
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, rep, err = run_inspect(capsys, str(out), "--verify")
    assert code == 1
    assert rep["verify"]["failures"] == [
        "shard-000000.tar sample img_b: record checksum mismatch: the record is corrupt or truncated"
    ]
    assert "verify failed: shard-000000.tar sample img_b" in err


def test_verify_reports_missing_shards_and_wrong_counts(encoded, tmp_path, capsys):
    out = copy_out(encoded, tmp_path)
    (out / "shard-000001.tar").unlink()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"][0]["samples"] = 5
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, rep, err = run_inspect(capsys, str(out), "--verify")
    assert code == 1
    assert rep["verify"]["failures"] == [
        "shard-000000.tar: holds 2 samples, the manifest says 5",
        "shard-000001.tar: listed in the manifest but missing",
    ]


def test_decode_writes_pngs_and_coco_that_reads_back(encoded, tmp_path, capsys):
    assert decode_cli.main([str(encoded), str(tmp_path / "dec")]) == 0
    coco = json.loads((tmp_path / "dec" / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == CLASSES
    assert sorted(p.name for p in (tmp_path / "dec" / "images").iterdir()) == [f"{k}.png" for k in TRUTH]
    # The decoded set is itself a COCO dataset with the original boxes and labels.
    source = open_source(tmp_path / "dec")
    assert source.format == "coco" and source.classes == CLASSES
    for item in source.items:
        assert [list(b) for b in item.boxes] == TRUTH[item.key][0] and item.labels == TRUTH[item.key][1]


def test_inspect_and_decode_classic_shards(tmp_path, capsys):
    src = write_coco(tmp_path / "src")
    assert encode_cli.main([str(src), str(tmp_path / "out"), "--codec", "webp", "--no-progress"]) == 0
    code, rep, err = run_inspect(capsys, str(tmp_path / "out"), "--verify")
    assert code == 0 and rep["codecs"] == {"webp": 3} and rep["verify"]["decoded"] == 3
    assert rep["inr_shapes"] == {"background": {}, "objects": {}}
    assert decode_cli.main([str(tmp_path / "out"), str(tmp_path / "dec")]) == 0
    assert len(list((tmp_path / "dec" / "images").glob("*.png"))) == 3


def test_unreadable_paths(tmp_path, capsys):
    assert inspect_shards.main([str(tmp_path / "none")]) == 2
    assert "no such shard file or folder" in capsys.readouterr().err
