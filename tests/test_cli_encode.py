"""rinr-encode end to end on tiny datasets: every input format, classic codecs, bad input, resume, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA
from PIL import Image
from test_shards import read_with_plain_webdataset
from tiny_datasets import (
    CLASSES,
    FAST,
    ONE_THREAD_ENV,
    TRUTH,
    WRITERS,
    one_torch_thread,  # noqa: F401 - autouse fixture
    write_coco,
)

import rinr_data as R
from rinr_data import shards
from rinr_data.cli.encode import main
from rinr_data.codecs.classic import decode_classic
from rinr_data.core.metrics import region_psnr
from rinr_data.decode import decode

ROOT = Path(__file__).resolve().parent.parent


def read_out(out: Path) -> dict[str, dict]:
    """key -> {"json": meta, ext: bytes, "__shard__": name} over the manifest's shards."""
    found, manifest = shards.find_shards([out])
    assert manifest is not None
    return {s["__key__"]: {**s, "json": json.loads(s["json"])} for p in found for s in shards.iter_shard(p)}


def many(n: int) -> dict:
    """n samples cycling through the tiny truth."""
    names = list(TRUTH)
    return {f"f{i:02d}": TRUTH[names[i % len(names)]] for i in range(n)}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_round_trips_boxes_and_labels(tmp_path, fmt, capsys):
    src = WRITERS[fmt](tmp_path / "src")
    # rinr for one format (the slow codec), jpeg for the others: reading the source is what differs here.
    codec = [*FAST, "--batch", "3"] if fmt == "coco" else ["--codec", "jpeg", "--no-progress"]
    assert main([str(src), str(tmp_path / "out"), *codec]) == 0
    manifest = shards.read_manifest(tmp_path / "out")
    assert manifest["source"]["format"] == fmt and manifest["samples"] == 3 and manifest["skipped"] == []
    assert manifest["classes"] == ([] if fmt == "folder" else CLASSES)
    got = read_out(tmp_path / "out")
    prefix = "train_" if fmt == "yolo" else ""
    for name, (boxes, labels) in TRUTH.items():
        meta = got[prefix + name]["json"]
        want = ([], []) if fmt == "folder" else (boxes, labels)
        np.testing.assert_allclose(np.reshape(meta["boxes"], (-1, 4)), np.reshape(want[0], (-1, 4)), atol=1e-5)
        assert meta["labels"] == want[1] and (meta["width"], meta["height"]) == (32, 24)
    err = capsys.readouterr().err
    assert "3 samples" in err and "skipped: 0 sample(s)" in err


def test_rinr_and_jpeg_shards_hold_identical_json_but_the_psnr(tmp_path):
    src = write_coco(tmp_path / "src")
    assert main([str(src), str(tmp_path / "rinr"), *FAST, "--batch", "3"]) == 0
    assert main([str(src), str(tmp_path / "jpeg"), "--no-progress", "--codec", "jpeg", "--quality", "80"]) == 0
    rinr, jpeg = read_out(tmp_path / "rinr"), read_out(tmp_path / "jpeg")
    assert list(rinr) == list(jpeg) == list(TRUTH)
    for key in rinr:
        a, b = rinr[key]["json"], jpeg[key]["json"]
        assert a.keys() == b.keys() == set(shards.JSON_FIELDS)
        assert {k: v for k, v in a.items() if "psnr" not in k} == {k: v for k, v in b.items() if "psnr" not in k}
        assert a["boxes"] == TRUTH[key][0]  # integer pixel boxes survive exactly
        original = torch.from_numpy(np.array(Image.open(src / "images" / f"{key}.png").convert("RGB")))
        original = original.permute(2, 0, 1)
        q = region_psnr(original, decode_classic(jpeg[key]["jpg"]), b["boxes"])
        assert b["object_psnr"] == pytest.approx(q.objects) and b["background_psnr"] == pytest.approx(q.background)
        q = region_psnr(original, decode(rinr[key]["rinr"]), a["boxes"])
        assert a["object_psnr"] == pytest.approx(q.objects) and a["background_psnr"] == pytest.approx(q.background)
    manifest = shards.read_manifest(tmp_path / "jpeg")
    assert manifest["codec"] == "jpeg" and manifest["codec_config"] == {"quality": 80}
    assert shards.read_manifest(tmp_path / "rinr")["codec_config"]["max_steps"] == 10
    # A consumer needs nothing but webdataset.
    rows = read_with_plain_webdataset(str(tmp_path / "jpeg" / "shard-000000.tar"), "jpg")
    assert [r[0] for r in rows] == list(TRUTH) and rows[2][2] == TRUTH["img_c"][0]
    rows = read_with_plain_webdataset(str(tmp_path / "rinr" / "shard-000000.tar"), "rinr")
    assert [r[3] for r in rows] == [TRUTH[k][1] for k in TRUTH]


@pytest.mark.parametrize("codec,ext", [("webp", "webp"), ("avif", "avif")])
def test_other_classic_codecs(tmp_path, codec, ext):
    src = write_coco(tmp_path / "src")
    assert main([str(src), str(tmp_path / "out"), "--codec", codec, "--no-progress", "--size", "16x12"]) == 0
    got = read_out(tmp_path / "out")
    assert all(ext in s and s["json"]["width"] == 16 for s in got.values())
    assert got["img_a"]["json"]["boxes"] == [[1.0, 1.5, 6.0, 7.0]]  # scaled with the image


def test_real_frames_round_trip_boxes(tmp_path):
    ann = json.loads((DATA / "vtest-dev" / "annotations.json").read_text())
    assert (
        main([str(DATA / "vtest-dev"), str(tmp_path / "out"), "--codec", "jpeg", "--no-progress", "--shard-size", "3"])
        == 0
    )
    got = read_out(tmp_path / "out")
    assert len(got) == 8 and len(list((tmp_path / "out").glob("*.tar"))) == 3
    for im in ann["images"]:
        want = [
            [x, y, x + w, y + h] for a in ann["annotations"] if a["image_id"] == im["id"] for x, y, w, h in [a["bbox"]]
        ]
        meta = got[Path(im["file_name"]).stem]["json"]
        assert meta["boxes"] == want and meta["labels"] == [0] * len(want) and meta["source"] == im["file_name"]


def real_subset(tmp_path: Path, n: int) -> Path:
    """The first n committed real frames as their own COCO dataset."""
    ann = json.loads((DATA / "vtest-dev" / "annotations.json").read_text())
    ann["images"] = ann["images"][:n]
    ids = {im["id"] for im in ann["images"]}
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in ids]
    (tmp_path / "images").mkdir(parents=True)
    for im in ann["images"]:
        shutil.copy(DATA / "vtest-dev" / "images" / im["file_name"], tmp_path / "images")
    (tmp_path / "annotations.json").write_text(json.dumps(ann))
    return tmp_path


def test_real_frames_rinr(tmp_path):
    src = real_subset(tmp_path / "src", 2)
    assert (
        main(
            [
                str(src),
                str(tmp_path / "out"),
                "--max-steps",
                "5",
                "--pixels-per-step",
                "64",
                "--batch",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    got = read_out(tmp_path / "out")
    ann = json.loads((src / "annotations.json").read_text())
    for im in ann["images"]:
        meta = got[Path(im["file_name"]).stem]["json"]
        want = [
            [x, y, x + w, y + h] for a in ann["annotations"] if a["image_id"] == im["id"] for x, y, w, h in [a["bbox"]]
        ]
        assert meta["boxes"] == want
        assert decode(got[Path(im["file_name"]).stem]["rinr"]).shape == (3, 288, 384)


# ---------------------------------------------------------------------------------------------- bad input


def bad_coco(tmp_path: Path) -> Path:
    """img_a missing on disk, img_b with an unknown category, img_c fine, img_d with a box partly outside."""
    truth = dict(TRUTH)
    truth["img_d"] = ([[20, 10, 40, 30]], [0])
    src = write_coco(tmp_path / "src", truth)
    (src / "images" / "img_a.png").unlink()
    data = json.loads((src / "annotations.json").read_text())
    data["annotations"][1]["category_id"] = 9
    (src / "annotations.json").write_text(json.dumps(data))
    return src


def test_bad_input_stops_by_default_naming_the_file(tmp_path, capsys):
    src = bad_coco(tmp_path)
    assert main([str(src), str(tmp_path / "out"), "--codec", "jpeg", "--no-progress", "--shard-size", "2"]) == 1
    err = capsys.readouterr().err
    assert "error: img_a.png: image not found" in err and "--on-error skip" in err
    assert not list((tmp_path / "out").glob("*.tar"))  # the failed shard wrote nothing
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_bad_input_skipped_and_counted(tmp_path, capsys):
    src = bad_coco(tmp_path)
    out = tmp_path / "out"
    assert (
        main([str(src), str(out), "--codec", "jpeg", "--no-progress", "--shard-size", "2", "--on-error", "skip"]) == 0
    )
    err = capsys.readouterr().err
    assert "skipped: 2 sample(s)" in err
    assert "annotation id 101: unknown class: category_id 9" in err
    assert "warning: annotations.json annotation id 106: box [20.0, 10.0, 40.0, 30.0] extends outside" in err
    got = read_out(out)
    assert list(got) == ["img_c", "img_d"]
    assert got["img_d"]["json"]["boxes"] == [[20.0, 10.0, 32.0, 24.0]]
    manifest = shards.read_manifest(out)
    assert [s["key"] for s in manifest["skipped"]] == ["img_a", "img_b"]
    assert [s["samples"] for s in manifest["shards"]] == [0, 2]  # shard i keeps its slot even when emptied


@pytest.mark.parametrize("box,reason", [([5, 5, 5, 9], "zero area"), ([9, 5, 3, 9], "inverted")])
def test_zero_area_and_inverted_boxes(tmp_path, capsys, box, reason):
    src = write_coco(tmp_path / "src", {"img_a": ([box], [0]), "img_b": TRUTH["img_b"]})
    assert main([str(src), str(tmp_path / "out"), "--codec", "jpeg", "--no-progress", "--on-error", "skip"]) == 0
    err = capsys.readouterr().err
    assert "skipped: annotations.json annotation id 100: box" in err and reason in err
    assert list(read_out(tmp_path / "out")) == ["img_b"]


def test_malformed_annotation_files(tmp_path, capsys):
    src = write_coco(tmp_path / "coco")
    (src / "annotations.json").write_text('{"images": [], "annotations": [}')
    assert main([str(src), str(tmp_path / "o1"), "--no-progress"]) == 2
    assert "annotations.json: malformed JSON at line 1" in capsys.readouterr().err
    src = WRITERS["voc"](tmp_path / "voc")
    (src / "img_b.xml").write_text("<annotation><object>")
    assert main([str(src), str(tmp_path / "o2"), "--codec", "jpeg", "--no-progress", "--on-error", "skip"]) == 0
    err = capsys.readouterr().err
    assert "img_b.xml: malformed XML at line 1" in err and "skipped: 1 sample(s)" in err
    assert list(read_out(tmp_path / "o2")) == ["img_a", "img_c"]


def test_usage_errors(tmp_path, capsys):
    src = write_coco(tmp_path / "src")
    with pytest.raises(SystemExit):
        main([str(src), str(tmp_path / "o"), "--codec", "jpeg", "--max-steps", "5"])
    assert "apply to --codec rinr only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(src), str(tmp_path / "o"), "--size", "8x8", "--max-side", "4"])
    assert main([str(tmp_path / "nothing"), str(tmp_path / "o")]) == 2


def test_box_levels_and_margin_flags_set_the_grid_records_and_are_checked(tmp_path, capsys):
    src = write_coco(tmp_path / "src", {"img_a": TRUTH["img_a"]})
    assert main([str(src), str(tmp_path / "out"), "--box-levels", "0", "--max-steps", "5", "--no-progress"]) == 0
    record = R.unpack_record(next(iter(read_out(tmp_path / "out").values()))["rinr"])
    assert record.shape.box_levels == 0 != R.GridConfig().grid.box_levels
    assert main([str(src), str(tmp_path / "wide"), "--box-margin", "3", "--max-steps", "5", "--no-progress"]) == 0
    record = R.unpack_record(next(iter(read_out(tmp_path / "wide").values()))["rinr"])
    assert record.shape.box_margin == 3 != R.GridConfig().grid.box_margin
    for extra, message in (
        (["--box-levels", "9"], "box_levels must be in"),
        (["--box-margin", "300"], "box_margin must be in"),
        (["--preset", "paper", "--box-levels", "1"], "grid preset only"),
        (["--preset", "paper", "--box-margin", "1"], "grid preset only"),
        (["--codec", "jpeg", "--box-levels", "1"], "apply to --codec rinr only"),
    ):
        with pytest.raises(SystemExit):
            main([str(src), str(tmp_path / "other"), *extra, "--no-progress"])
        assert message in capsys.readouterr().err


def test_scene_auto_needs_the_grid_preset(tmp_path, capsys):
    src = write_coco(tmp_path / "src", {"img_a": TRUTH["img_a"]})
    for extra in (["--codec", "jpeg"], ["--preset", "paper"]):
        with pytest.raises(SystemExit):
            main([str(src), str(tmp_path / "out"), *extra, "--scene", "auto", "--no-progress"])
        assert "scene mode needs codec rinr with the grid preset" in capsys.readouterr().err


def test_scene_cut_reaches_the_codec_config_and_needs_scene_mode(tmp_path):
    from rinr_data.cli.encode import build_config, build_parser

    parser = build_parser()
    args = parser.parse_args(["src", "out", "--scene", "auto", "--scene-cut", "20"])
    assert build_config(args).codec_config.scene.cut_psnr == 20.0
    # Scene mode shares a scene's bytes over a batch: by default the batch is the whole shard, else 4 frames.
    assert build_config(args).batch == 1000
    assert build_config(parser.parse_args(["src", "out", "--scene", "auto", "--shard-size", "50"])).batch == 50
    assert build_config(parser.parse_args(["src", "out", "--scene", "auto", "--batch", "8"])).batch == 8
    assert build_config(parser.parse_args(["src", "out"])).batch == 4
    with pytest.raises(ValueError, match="--scene-cut"):
        build_config(parser.parse_args(["src", "out", "--scene-cut", "20"]))


def test_scene_auto_has_quality_defaults_of_its_own_and_flags_override_them():
    from rinr_data.cli.encode import build_config, build_parser
    from rinr_data.codecs.grid.config import SCENE_DEFAULTS

    parser = build_parser()

    def codec(*extra):
        return build_config(parser.parse_args(["src", "out", *extra])).codec_config

    scene, frame = codec("--scene", "auto"), codec()
    assert (scene.object_psnr, scene.background_psnr, scene.max_steps) == (
        SCENE_DEFAULTS["object_psnr"],
        SCENE_DEFAULTS["background_psnr"],
        SCENE_DEFAULTS["max_steps"],
    )
    assert scene.grid.box_margin == SCENE_DEFAULTS["box_margin"] and scene.scene.cut_psnr == SCENE_DEFAULTS["cut_psnr"]
    assert scene.grid.box_levels == frame.grid.box_levels and scene.scene.frame_synthesis == "auto"
    # Per-frame records keep the codec's own defaults.
    assert (frame.object_psnr, frame.background_psnr, frame.grid.box_margin, frame.scene) == (33.0, 25.0, 0, None)
    given = codec("--scene", "auto", "--object-psnr", "24", "--box-margin", "4", "--scene-cut", "15", "--max-steps=9")
    assert (given.object_psnr, given.background_psnr, given.grid.box_margin, given.max_steps) == (24.0, 28.0, 4, 9)
    assert given.scene.cut_psnr == 15.0 and given.scene.window == scene.scene.window


def test_scene_auto_stores_scene_records_in_the_shards(tmp_path):
    import torch

    import rinr_data as R
    from rinr_data.pipeline.dataset import RINRDataset

    same = {f"f{i}": TRUTH["img_b"] for i in range(5)}  # 5 frames of one static scene
    src = write_coco(tmp_path / "src", same)
    out = tmp_path / "out"
    assert main([str(src), str(out), *FAST, "--scene", "auto", "--batch", "3", "--shard-size", "3"]) == 0
    assert shards.read_manifest(out)["scenes"] == "in-shard"
    samples = [s for path in sorted(out.glob("*.tar")) for s in shards.iter_shard(path)]
    assert [s["__key__"] for s in samples] == [f"f{i}" for i in range(5)]
    carried = shards.scene_members(samples)
    names = [json.loads(s["json"])["scene"] for s in samples]
    assert set(names) == set(carried) and len(carried) >= 2  # batches never share a scene across shards
    expected = {s["__key__"]: R.decode(s["rinr"], scenes={n: carried[n]}) for s, n in zip(samples, names)}
    seen = {}
    for batch in R.RINRLoader(RINRDataset(out, batch_size=2, shuffle=True, device="cpu")):
        for key, image in zip(batch["keys"], batch["images"]):
            seen[key] = image
    assert sorted(seen) == sorted(expected)
    for key, image in seen.items():
        assert torch.equal((image * 255).round().to(torch.uint8), expected[key])
    # The tools resolve the scenes too.
    from rinr_data.cli.decode import decoded_samples
    from rinr_data.cli.inspect_shards import inspect

    assert {k: torch.equal(img, expected[k]) for k, img, _ in decoded_samples([out])} == {k: True for k in expected}
    summary, _ = inspect([out], verify=True)
    assert summary.decoded == 5 and not summary.failures


# ---------------------------------------------------------------------------------------------- resume


def test_rerun_with_other_arguments_is_refused(tmp_path, capsys):
    src = write_coco(tmp_path / "src")
    args = [str(src), str(tmp_path / "out"), "--codec", "jpeg", "--no-progress", "--shard-size", "2"]
    assert main(args) == 0
    assert main(args) == 0  # complete: nothing to do, manifest rewritten identically
    assert "0 written by this run, 2 already complete" in capsys.readouterr().err
    assert main([*args[:-1], "3"]) == 2
    err = capsys.readouterr().err
    assert "different arguments" in err and "settings.shard_size is 3 now, was 2" in err
    assert main([*args, "--workers", "1", "--on-error", "skip"]) == 0  # execution-only options may change


KILL_AFTER = r"""
import os, signal, sys
from rinr_data.cli.encode import main
k = int(sys.argv[1])
seen = []
def hook(shard, key):
    seen.append(key)
    if len(seen) == k:
        os.kill(os.getpid(), signal.SIGKILL)
sys.exit(main(sys.argv[2:], on_sample=hook))
"""


def test_sigkill_mid_shard_then_rerun_gives_exactly_the_uninterrupted_shards(tmp_path):
    src = write_coco(tmp_path / "src", many(7))
    common = [*FAST, "--shard-size", "3", "--batch", "2"]
    # Killed right after the 5th sample went into shard 1 (of 0..2): shard 0 complete, shard 1 partial.
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER, "5", str(src), str(tmp_path / "part"), *common],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **ONE_THREAD_ENV},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    part = tmp_path / "part"
    assert sorted(p.name for p in part.glob("*.tar")) == ["shard-000000.tar"]
    assert (part / shards.WORK_DIR / "shard-000001.tar.partial").is_file()
    assert main([str(src), str(part), *common]) == 0
    assert main([str(src), str(tmp_path / "whole"), *common]) == 0
    resumed, whole = read_out(part), read_out(tmp_path / "whole")
    assert list(resumed) == list(whole) == list(many(7))  # nothing lost, nothing twice, same order
    for key in whole:
        assert resumed[key]["json"] == whole[key]["json"] and resumed[key]["__shard__"] == whole[key]["__shard__"]
    assert not list((part / shards.WORK_DIR).glob("*.partial"))
    # Same machine and thread count: the records and so the shard files are byte-identical.
    assert (part / "manifest.json").read_text() == (tmp_path / "whole" / "manifest.json").read_text()


# ---------------------------------------------------------------------------------------------- torchrun


def test_two_rank_torchrun_encode(tmp_path):
    src = write_coco(tmp_path / "src", many(5))
    common = [*FAST, "--shard-size", "2", "--batch", "2", "--codec", "rinr"]
    env = {**os.environ, **ONE_THREAD_ENV}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(ROOT / "tools" / "encode.py"),
            str(src),
            str(tmp_path / "dist"),
            *common,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = shards.read_manifest(tmp_path / "dist")
    assert [s["name"] for s in manifest["shards"]] == [f"shard-00000{i}.tar" for i in range(3)]
    assert [s["samples"] for s in manifest["shards"]] == [2, 2, 1]
    for s in manifest["shards"]:
        assert shards.sha256_file(tmp_path / "dist" / s["name"]) == s["sha256"]
    assert main([str(src), str(tmp_path / "single"), *common]) == 0
    dist, single = read_out(tmp_path / "dist"), read_out(tmp_path / "single")
    assert list(dist) == list(single) == list(many(5))
    for key in single:
        assert {k: v for k, v in dist[key]["json"].items() if "psnr" not in k} == {
            k: v for k, v in single[key]["json"].items() if "psnr" not in k
        }
        assert decode(dist[key]["rinr"]).shape == (3, 24, 32)


def test_a_frame_whose_scene_is_missing_fails_alone(tmp_path):
    from rinr_data.pipeline.dataset import RINRDataset

    same = {f"f{i}": TRUTH["img_b"] for i in range(3)}
    src = write_coco(tmp_path / "src", same)
    out = tmp_path / "out"
    assert main([str(src), str(out), *FAST, "--scene", "auto", "--batch", "2", "--shard-size", "3"]) == 0
    samples = list(shards.iter_shard(next(out.glob("*.tar"))))
    lost = next(s for s in samples if any(k.endswith(".scene") for k in s))  # f0 carries the first batch's scene
    lost_scene = json.loads(lost["json"])["scene"]
    broken = tmp_path / "broken"
    kept = [
        shards.ShardSample(
            s["__key__"],
            "rinr",
            s["rinr"],
            json.loads(s["json"]),
            {k[:-6]: v for k, v in s.items() if k.endswith(".scene") and k[:-6] != lost_scene},
        )
        for s in samples
    ]
    shards.write_shard(broken, "shard-000000.tar", kept)
    orphans = {s["__key__"] for s in samples if json.loads(s["json"])["scene"] == lost_scene}
    with pytest.raises(R.FormatError, match=f"sample '(f0|f1)'.*{lost_scene}"):
        list(RINRDataset(str(broken / "shard-000000.tar"), batch_size=1, shuffle=False, device="cpu"))
    dataset = RINRDataset(str(broken / "shard-000000.tar"), batch_size=1, shuffle=False, device="cpu", on_error="skip")
    assert {k for batch in dataset for k in batch.keys} == {s["__key__"] for s in samples} - orphans
    assert dataset.errors == len(orphans)


@pytest.mark.parametrize("flag, value", [("compile", "off"), ("precision", "bfloat16")])
def test_fit_flags_set_how_the_grid_fit_runs_not_what_decides_the_bytes(flag, value):
    from rinr_data.cli.encode import build_config, build_parser

    parser = build_parser()

    def codec(*extra):
        return build_config(parser.parse_args(["src", "out", *extra])).codec_config

    default, chosen = codec(), codec(f"--{flag}", value)
    assert (getattr(default, flag), getattr(chosen, flag)) == ("auto", value)
    # Like --device, it is not a setting a resumed run must match.
    assert default.settings() == chosen.settings() and flag not in chosen.settings()
    with pytest.raises(ValueError, match=f"--{flag} applies to the grid preset only"):
        codec("--preset", "paper", f"--{flag}", value)
    with pytest.raises(SystemExit):
        parser.parse_args(["src", "out", f"--{flag}", "fast"])
