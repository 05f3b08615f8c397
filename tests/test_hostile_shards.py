"""Hostile shards and inputs (issue 22): member names that escape the output, empty inputs, damaged shards on resume,
labels outside the manifest's classes."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest
import torch
from conftest import smooth_frame
from tiny_datasets import (
    CLASSES,
    TRUTH,
    one_torch_thread,  # noqa: F401 - autouse fixture
    write_coco,
)

from rinr_data import shards
from rinr_data.cli import decode as decode_cli
from rinr_data.cli import encode as encode_cli
from rinr_data.cli import inspect_shards
from rinr_data.codecs.classic import encode_classic
from rinr_data.errors import FormatError
from rinr_data.pipeline.dataset import RINRDataset

H, W = 12, 16
JPEG = encode_classic(torch.from_numpy(smooth_frame(H, W)).permute(2, 0, 1), "jpeg", 90)


def meta(labels: list = (0,)) -> dict:
    """Sample JSON with one box per label."""
    m = shards.sample_meta(W, H, [[1, 1, 6, 7]] * len(labels), [0] * len(labels), "src.png", 40.0, 30.0)
    m["labels"] = list(labels)  # as given, so tests can store what sample_meta would refuse
    return m


def hand_tar(path: Path, samples: dict[str, dict]) -> Path:
    """A shard made with tarfile alone: member `{key}.jpg` + `{key}.json` per key, names exactly as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for key, m in samples.items():
            for ext, data in (("jpg", JPEG), ("json", json.dumps(m).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def run_inspect(capsys, *args: str) -> tuple[int, dict | None, str]:
    """Exit code, JSON report (None when it printed none) and stderr of rinr-inspect."""
    code = inspect_shards.main([*args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else None, captured.err


def files_under(folder: Path) -> set[str]:
    """Every file below `folder`, relative."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------- keys


@pytest.mark.parametrize("key", ["img_a", "sub/dir/img", "a-b_C9", "-x"])
def test_check_key_accepts_safe_keys(key):
    assert shards.check_key(key) == key


@pytest.mark.parametrize(
    "key", ["../x", "/abs/x", "a/../../x", "..", "", "a//b", "a/", ".hidden", "a.b", "a\\b", "a b", "é", "a\0b"]
)
def test_check_key_refuses_unsafe_keys_naming_them(key):
    with pytest.raises(FormatError, match="key " + re.escape(repr(key))):
        shards.check_key(key)


def test_writing_refuses_what_reading_refuses():
    for key in ("a/../b", "a//b", "a.b"):
        with pytest.raises(ValueError, match="key"):
            shards.ShardSample(key, "jpeg", JPEG, meta()).members()


BAD_KEYS = ["../x", "/abs/x", "a/../../x"]


def test_reading_a_bad_key_gives_a_damaged_sample_and_the_shard_goes_on(tmp_path):
    path = hand_tar(
        tmp_path / "shard-000000.tar", {"good_a": meta(), **{k: meta() for k in BAD_KEYS}, "good_b": meta()}
    )
    read = list(shards.iter_shard(path))
    assert [s["__key__"] for s in read] == ["good_a", *BAD_KEYS, "good_b"]
    for sample in read[1:4]:
        assert "jpg" not in sample and "json" not in sample  # nothing of it reaches a reader under a hostile name
        with pytest.raises(FormatError, match=re.escape(repr(sample["__key__"]))):
            shards.sample_json(sample)
        with pytest.raises(FormatError, match="key"):
            shards.image_member(sample)
    assert shards.sample_json(read[4])["width"] == W


def test_inspect_verify_reports_each_bad_key_naming_shard_and_key(tmp_path, capsys):
    hand_tar(tmp_path / "in" / "shard-000000.tar", {"good": meta(), **{k: meta() for k in BAD_KEYS}})
    code, rep, err = run_inspect(capsys, str(tmp_path / "in"), "--verify")
    assert code == 1 and rep["verify"]["decoded"] == 1 and rep["samples"] == 1
    failures = rep["verify"]["failures"]
    assert len(failures) == 3
    for key, failure in zip(BAD_KEYS, failures):
        assert failure.startswith(f"shard-000000.tar sample {key}: ") and repr(key) in failure


@pytest.mark.parametrize("key", ["../../x", "a/../../../x", "ABS"])
def test_decode_never_writes_outside_out(tmp_path, capsys, key):
    if key == "ABS":
        key = str(tmp_path / "abs" / "x")  # an absolute member name
    hand_tar(tmp_path / "in" / "shard-000000.tar", {"good": meta(), key: meta()})
    out = tmp_path / "work" / "dec"
    assert decode_cli.main([str(tmp_path / "in"), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: shard-000000.tar: sample ") and repr(key) in err
    outside = {f for f in files_under(tmp_path) if not f.startswith("work/dec/")}
    assert outside == {"in/shard-000000.tar"}  # nothing written outside OUT
    assert not (out / "annotations.json").exists()


def test_decode_does_not_follow_a_symlink_out_of_out(tmp_path, capsys):
    hand_tar(tmp_path / "in" / "shard-000000.tar", {"sub/img": meta()})
    out = tmp_path / "dec"
    (out / "images").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (out / "images" / "sub").symlink_to(tmp_path / "elsewhere")
    assert decode_cli.main([str(tmp_path / "in"), str(out)]) == 2
    assert "sample 'sub/img'" in capsys.readouterr().err and not any((tmp_path / "elsewhere").iterdir())


def test_decode_creates_the_folders_of_keys_with_slashes(tmp_path, capsys):
    hand_tar(tmp_path / "in" / "shard-000000.tar", {"top": meta(), "sub/dir/img": meta([1])})
    out = tmp_path / "dec"
    assert decode_cli.main([str(tmp_path / "in"), str(out)]) == 0
    assert files_under(out) == {"images/top.png", "images/sub/dir/img.png", "annotations.json"}
    coco = json.loads((out / "annotations.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["top.png", "sub/dir/img.png"]


def test_decode_refuses_a_key_twice(tmp_path, capsys):
    hand_tar(tmp_path / "in" / "shard-000000.tar", {"a": meta()})
    hand_tar(tmp_path / "in" / "shard-000001.tar", {"a": meta()})
    assert decode_cli.main([str(tmp_path / "in"), str(tmp_path / "dec")]) == 2
    err = capsys.readouterr().err
    assert "shard-000001.tar: sample 'a'" in err and "twice" in err


def test_dataset_treats_a_bad_key_per_on_error(tmp_path):
    hand_tar(tmp_path / "in" / "shard-000000.tar", {"good": meta(), "../x": meta(), "also_good": meta()})
    url = [str(tmp_path / "in" / "shard-000000.tar")]
    with pytest.raises(FormatError, match=r"shard-000000\.tar: sample '\.\./x'"):
        list(RINRDataset(url, batch_size=1, shuffle=False, device="cpu"))
    ds = RINRDataset(url, batch_size=1, shuffle=False, on_error="skip", device="cpu")
    assert [k for batch in ds for k in batch.keys] == ["good", "also_good"]


def test_a_manifest_naming_shards_outside_its_folder_is_refused(tmp_path, capsys):
    hand_tar(tmp_path / "elsewhere" / "shard-000000.tar", {"a": meta()})
    (tmp_path / "in").mkdir()
    shards.write_manifest(
        tmp_path / "in",
        {
            "format": "rinr-shards",
            "version": shards.LAYOUT_VERSION,
            "classes": CLASSES,
            "shards": [{"name": "../elsewhere/shard-000000.tar", "samples": 1, "bytes": 1, "sha256": "0"}],
        },
    )
    assert decode_cli.main([str(tmp_path / "in"), str(tmp_path / "dec")]) == 2
    assert "../elsewhere/shard-000000.tar" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- empty inputs


def empty_inputs(tmp_path: Path) -> dict[str, Path]:
    """An empty folder, one without shards, and one whose manifest lists none."""
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("no shards here")
    (other / "data.tar").write_bytes(b"")  # not a shard name
    listed = tmp_path / "listed"
    listed.mkdir()
    shards.write_manifest(
        listed, {"format": "rinr-shards", "version": shards.LAYOUT_VERSION, "classes": CLASSES, "shards": []}
    )
    return {"empty": empty, "other": other, "listed": listed}


@pytest.mark.parametrize("which", ["empty", "other", "listed"])
def test_inspect_and_decode_refuse_inputs_without_shards(tmp_path, capsys, which):
    path = empty_inputs(tmp_path)[which]
    for verify in ([], ["--verify"]):
        assert inspect_shards.main([str(path), *verify]) == 2
        assert capsys.readouterr().err == f"error: {path}: no shards found\n"
    assert decode_cli.main([str(path), str(tmp_path / "dec")]) == 2
    assert capsys.readouterr().err == f"error: {path}: no shards found\n"
    assert not (tmp_path / "dec").exists()


def test_missing_paths_are_still_errors(tmp_path, capsys):
    assert inspect_shards.main([str(tmp_path / "none"), "--verify"]) == 2
    assert decode_cli.main([str(tmp_path / "none"), str(tmp_path / "dec")]) == 2
    assert capsys.readouterr().err.count("no such shard file or folder") == 2


# ---------------------------------------------------------------------------------------------- resume


def damage_truncate(out: Path, name: str) -> None:
    path = out / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut in half: only the end blocks go here


def damage_cut_mid_member(out: Path, name: str) -> None:
    path = out / name
    path.write_bytes(path.read_bytes()[:1000])  # inside the first member's data: the tar no longer reads


def damage_padding(out: Path, name: str) -> None:
    data = bytearray((out / name).read_bytes())
    data[-1] ^= 1  # zero padding: the tar still reads, but it is not the shard that was written
    (out / name).write_bytes(bytes(data))


def damage_truncate_without_report(out: Path, name: str) -> None:
    shards.report_path(out, name).unlink()
    damage_truncate(out, name)


def damage_truncate_without_report_or_manifest(out: Path, name: str) -> None:
    (out / shards.MANIFEST).unlink()
    damage_truncate_without_report(out, name)


@pytest.mark.parametrize(
    "damage",
    [
        damage_truncate,
        damage_cut_mid_member,
        damage_padding,
        damage_truncate_without_report,
        damage_truncate_without_report_or_manifest,
    ],
)
def test_resume_redoes_a_damaged_shard(tmp_path, capsys, damage):
    src = write_coco(tmp_path / "src")
    out = tmp_path / "out"
    args = [str(src), str(out), "--codec", "jpeg", "--no-progress", "--shard-size", "2"]
    assert encode_cli.main(args) == 0
    original = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    manifest = (out / shards.MANIFEST).read_text()
    damage(out, "shard-000000.tar")
    capsys.readouterr()
    assert encode_cli.main(args) == 0
    err = capsys.readouterr().err
    assert "redoing shard-000000.tar: " in err and "1 written by this run, 1 already complete" in err
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == original
    assert [s["__key__"] for s in shards.iter_shard(out / "shard-000000.tar")] == list(TRUTH)[:2]
    assert (out / shards.MANIFEST).read_text() == manifest


def test_resume_keeps_intact_shards_without_redoing_them(tmp_path, capsys):
    src = write_coco(tmp_path / "src")
    out = tmp_path / "out"
    args = [str(src), str(out), "--codec", "jpeg", "--no-progress", "--shard-size", "2"]
    assert encode_cli.main(args) == 0
    shards.report_path(out, "shard-000001.tar").unlink()  # intact, checked against the manifest instead
    capsys.readouterr()
    assert encode_cli.main(args) == 0
    err = capsys.readouterr().err
    assert "redoing" not in err and "0 written by this run, 2 already complete" in err


# ---------------------------------------------------------------------------------------------- labels


def with_manifest(folder: Path, classes: list[str] | None) -> Path:
    """Write a manifest (classes given) over the hand-made shards of `folder`; None: no manifest."""
    if classes is not None:
        names = sorted(p.name for p in folder.glob("*.tar"))
        shards.write_manifest(
            folder,
            {
                "format": "rinr-shards",
                "version": shards.LAYOUT_VERSION,
                "classes": classes,
                "shards": [shards.read_shard_info(folder, n).manifest_entry() for n in names],
            },
        )
    return folder


@pytest.mark.parametrize("label", [2, -1, "1", 1.0, True, None])
def test_decode_refuses_labels_outside_the_classes(tmp_path, capsys, label):
    folder = with_manifest(
        hand_tar(tmp_path / "in" / "shard-000000.tar", {"ok": meta([1]), "bad": meta([0, label])}).parent, CLASSES
    )
    assert decode_cli.main([str(folder), str(tmp_path / "dec")]) == 2
    err = capsys.readouterr().err
    assert "shard-000000.tar: sample 'bad'" in err and f"label {label!r}" in err
    assert not (tmp_path / "dec" / "annotations.json").exists()


def test_decode_without_manifest_needs_non_negative_int_labels(tmp_path, capsys):
    folder = hand_tar(tmp_path / "in" / "shard-000000.tar", {"a": meta([7])}).parent
    assert decode_cli.main([str(folder), str(tmp_path / "dec")]) == 0  # no class names to hold them to
    coco = json.loads((tmp_path / "dec" / "annotations.json").read_text())
    assert coco["annotations"][0]["category_id"] == 8
    hand_tar(folder / "shard-000000.tar", {"a": meta([-1])})
    assert decode_cli.main([str(folder), str(tmp_path / "dec2")]) == 2
    assert "sample 'a'" in capsys.readouterr().err


def test_inspect_verify_reports_labels_outside_the_classes(tmp_path, capsys):
    folder = with_manifest(
        hand_tar(tmp_path / "in" / "shard-000000.tar", {"ok": meta([1]), "bad": meta([5])}).parent, CLASSES
    )
    code, rep, err = run_inspect(capsys, str(folder), "--verify")
    assert code == 1
    assert len(rep["verify"]["failures"]) == 1
    assert (
        rep["verify"]["failures"][0].startswith("shard-000000.tar sample bad: ")
        and "label 5" in rep["verify"]["failures"][0]
    )
