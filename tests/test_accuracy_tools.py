"""The demo and the accuracy tools (rinr_bench.demo, .bench_accuracy, .bench_hybrid behind tools/*.py) end to end
on a tiny COCO set (seconds, not minutes)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from tiny_datasets import TRUTH, write_coco

from rinr_data import GridConfig, shards
from rinr_data.pipeline.augment import AugmentConfig

FAST_CODEC = ["--fit-steps", "4", "--pixels-per-step", "64"]


def tool(name: str):
    """The rinr_bench module behind tools/<name>.py."""
    return importlib.import_module(f"rinr_bench.{name}")


@pytest.fixture
def coco(tmp_path) -> Path:
    """6 frames f0..f5 (24x32, 1-3 boxes, 2 classes)."""
    return write_coco(tmp_path / "coco", {f"f{i}": TRUTH[("img_a", "img_b", "img_c")[i % 3]] for i in range(6)})


def test_demo_prints_one_table(coco, tmp_path, capsys):
    out = tmp_path / "kept"
    args = [
        "--data",
        str(coco),
        "--train-frames",
        "4",
        "--val-frames",
        "2",
        "--max-side",
        "0",
        "--train-steps",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--object-psnr",
        "28",
        "--background-psnr",
        "26",
        "--box-levels",
        "0",
        *FAST_CODEC,
    ]
    assert tool("demo").main(args) == 0
    text = capsys.readouterr().out
    assert "frames 0-3 train, 4-5 validate" in text
    assert "targets: objects 28 dB, background 26 dB), 4 fitting steps, at most 0 box-only levels" in text
    from rinr_data import shards, unpack_record

    records = [unpack_record(s["rinr"]) for tar in sorted((out / "rinr").glob("*.tar")) for s in shards.iter_shard(tar)]
    assert len(records) == 4 and all(r.shape.box_levels == 0 for r in records)
    rows = [line for line in text.splitlines() if line.startswith(("| RINR", "| JPEG q", "| AVIF q"))]
    names = [r.split("|")[1].strip() for r in rows]
    assert names[0] == "RINR" and names[1].endswith("(same object PSNR)") and len(rows) == 4
    assert [n.split()[0] for n in names[2:]] == ["JPEG", "AVIF"] and all(n.endswith("(same bytes)") for n in names[2:])
    assert all(len(r.split("|")) == 11 for r in rows)
    rinr_bytes = float(rows[0].split("|")[2].replace(",", ""))
    assert all(float(r.split("|")[2].replace(",", "")) <= rinr_bytes for r in rows[2:])  # the best within RINR's bytes
    errors = [r.split("|")[9].split("/") for r in rows]  # precision / recall / false alarms: fractions and a rate
    assert all(0 <= float(p) <= 1 and 0 <= float(rc) <= 1 and float(fa) >= 0 for p, rc, fa in errors)
    folders = {p.name for p in out.iterdir()}
    assert {"rinr", "val"} <= folders and {f.split("-")[0] for f in folders - {"rinr", "val"}} == {"jpeg", "avif"}


def test_demo_scene_mode_shares_one_scene_record(coco, tmp_path, capsys):
    out = tmp_path / "kept"
    args = [
        "--data",
        str(coco),
        "--train-frames",
        "4",
        "--val-frames",
        "2",
        "--max-side",
        "0",
        "--train-steps",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--scene",
        "auto",
        "--scene-cut",
        "0",
        *FAST_CODEC,
    ]
    assert tool("demo").main(args) == 0
    printed = capsys.readouterr().out
    # Scene mode brings its own quality defaults, as rinr-encode --scene auto does.
    assert "scene mode (new scene below 0 dB)" in printed and "targets: objects 18 dB, background 28 dB" in printed
    from rinr_data import shards

    samples = [s for tar in sorted((out / "rinr").glob("*.tar")) for s in shards.iter_shard(tar)]
    assert len(samples) == 4 and len(shards.scene_members(samples)) == 1
    with pytest.raises(SystemExit, match="--scene"):
        tool("demo").main([*args[: -len(FAST_CODEC)], "--preset", "paper", "--out", str(tmp_path / "other")])


def test_bench_accuracy_runs_every_condition_and_seed(coco, tmp_path, capsys):
    args = [
        "--data",
        str(coco),
        "--train-frames",
        "4",
        "--val-frames",
        "2",
        "--seeds",
        "0,1",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--batch",
        "4",
        "--device",
        "cpu",
        "--work",
        str(tmp_path / "work"),
        "--quiet",
        "--presets",
        "grid,paper,grid+scene",
        "--figure",
        str(tmp_path / "errors.png"),
        *FAST_CODEC,
    ]
    bench = tool("bench_accuracy")
    assert bench.main(args) == 0
    text = capsys.readouterr().out
    # The conditions' table (12 columns); the bytes-at-parity table after it has 8.
    rows = [line for line in text.splitlines() if line.startswith("| coco |") and line.count("|") == 13]
    assert [r.split("|")[2].strip() for r in rows] == [
        *bench.BASE_CONDITIONS,
        "rinr-grid",
        "rinr-paper",
        "rinr-grid+scene5",
    ]
    assert all(len(r.split("|")[10].split(",")) == 2 for r in rows)  # one mAP per seed
    for r in rows:  # precision / recall / false positives per frame, each a number in range
        precision, recall, fp = (float(v) for v in r.split("|")[11].split("/"))
        assert 0 <= precision <= 1 and 0 <= recall <= 1 and fp >= 0
    detail = {}
    for r in rows:  # "outside / inside (ratio x)", "(—)" for a flat background
        pair, ratio = r.split("|")[6].strip().removesuffix(")").split(" (")
        outside, inside = detail[r.split("|")[2].strip()] = [float(v) for v in pair.split("/")]
        if outside >= 0.01:  # both printed to 3 decimals, the ratio to 1: it is within what that rounding allows
            assert (
                (inside - 5e-4) / (outside + 5e-4) - 0.05
                <= float(ratio[:-1])
                <= (inside + 5e-4) / (outside - 5e-4) + 0.05
            )
    assert all(v >= 0 for pair in detail.values() for v in pair) and detail["original"][0] > 0
    assert detail["rinr-grid"][0] != detail["original"][0]  # measured on the decoded frames, not the originals
    assert "frames 0-3 train, 4-5 validate" in text
    scene_folder = next((tmp_path / "work" / "coco").glob("rinr*scene5*"))
    from rinr_data import shards

    samples = [s for tar in sorted(scene_folder.glob("*.tar")) for s in shards.iter_shard(tar)]
    assert shards.scene_members(samples) and all("scene" in shards.sample_json(s) for s in samples)
    from PIL import Image

    with Image.open(tmp_path / "errors.png") as figure:  # 2 validation frames x 6 conditions of 2x-upscaled 24x32
        assert figure.size == (4 + 6 * (64 + 4), 4 + 2 * (48 + 4))  # make_grid's 4-pixel padding


def test_bench_accuracy_rewrites_only_its_own_section(tmp_path):
    bench = tool("bench_accuracy")
    doc = tmp_path / "BENCHMARKS.md"
    before = "# Benchmarks\n\n## Other\n\n<!-- other:begin -->\nkeep\n<!-- other:end -->\n"
    doc.write_text(before)
    bench.write_section("first", doc)
    assert doc.read_text().startswith(before.rstrip("\n"))
    assert bench.HEADING in doc.read_text() and "first" in doc.read_text()
    bench.write_section("second", doc)
    text = doc.read_text()
    assert "second" in text and "first" not in text and text.count(bench.HEADING) == 1
    assert text.startswith(before.rstrip("\n"))


def test_bench_accuracy_preset_syntax_and_named_sections(tmp_path):
    bench = tool("bench_accuracy")
    V = bench.RinrVariant
    assert bench.parse_preset("grid") == V("grid")
    assert bench.parse_preset(" grid:600@33/30.5 ") == V("grid", 600, (33.0, 30.5))
    assert bench.parse_preset("paper:1000") == V("paper", 1000)
    variant = bench.parse_preset("grid:400@30/29+box0")
    assert variant == V("grid", 400, (30.0, 29.0), 0) and variant.name == "grid@30/29+box0"
    codec = variant.codec(fit_steps=999, device="cpu")
    assert (codec.max_steps, codec.object_psnr, codec.background_psnr, codec.grid.box_levels) == (400, 30, 29, 0)
    scene = bench.parse_preset("grid:400+box0+scene8")
    assert scene == V("grid", 400, None, 0, 8.0) and scene.name == "grid+box0+scene8"
    assert scene.codec().scene.psnr_margin == 8.0 and "scene mode" in scene.label(scene.codec())
    assert bench.parse_preset("grid+scene").scene_margin == bench.SceneConfig.psnr_margin
    cut = bench.parse_preset("grid@24/27.5+scene+cut20")
    assert cut.name == "grid@24/27.5+scene5+cut20" and cut.codec().scene.cut_psnr == 20.0
    assert "new scene below 20 dB" in cut.label(cut.codec())
    pad = bench.parse_preset("grid@24/27.5+pad4+scene+cut20")
    assert pad.name == "grid@24/27.5+pad4+scene5+cut20" and pad.codec().grid.box_margin == 4
    assert pad.codec().grid.box_levels == GridConfig().grid.box_levels and "4 px" in pad.label(pad.codec())
    assert pad.codec().scene.frame_synthesis == bench.SceneConfig.frame_synthesis
    tune = bench.parse_preset("grid@18/28+pad12+scene+cut20+tune")
    assert tune.name == "grid@18/28+pad12+scene5+cut20+tune" and tune.codec().scene.frame_synthesis == "tune"
    assert "frames tune the scene's synthesis" in tune.label(tune.codec())
    assert bench.parse_preset("grid+scene+reuse").codec().scene.frame_synthesis == "reuse"
    cold = bench.parse_preset("grid@24/27.5+cold")
    assert cold.name == "grid@24/27.5+cold" and cold.codec().warm_frames == 0 and cold.name != pad.name
    assert bench.parse_preset("grid").codec().warm_frames == GridConfig().warm_frames > 0
    assert "from scratch" in cold.label(cold.codec()) and "scratch" not in pad.label(pad.codec())
    second = bench.parse_preset("grid+cold+seed3")
    assert second.name == "grid+cold+seed3" and second.name != cold.name and second.codec().seed == 3
    assert bench.parse_preset("paper+seed2").codec().seed == 2 and bench.parse_preset("grid").codec().seed == 0
    assert second.label(second.codec()).endswith("from scratch, fitting seed 3")
    warm = bench.parse_preset("grid:900")
    expected = f"RINR grid, warm start, {GridConfig().warm_steps} steps a frame (900 for its 8-frame sample)"
    assert warm.label(warm.codec()).startswith(expected)
    assert cold.label(cold.codec(fit_steps=900)).startswith("RINR grid, 900 steps,")
    paper = bench.parse_preset("paper").codec(fit_steps=77)
    assert (paper.preset, paper.max_steps, paper.object_psnr) == ("paper", 77, 35.0)
    assert "warm" not in pad.label(pad.codec()) and "warm" not in bench.parse_preset("paper").label(paper)
    for bad in (
        "grid:x",
        "grid@30",
        "paper+box1",
        "grid+boxz",
        "grid+scenex",
        "paper+scene",
        "grid+foo",
        "grid+seedx",
        "grid+cut20",
        "grid+scene+cutx",
        "paper+pad4",
        "grid+padx",
        "paper+cold",
        "grid+colder",
        "grid+tune",
        "grid+scene+reuse+tune",
    ):
        with pytest.raises(ValueError, match="bad --presets entry"):
            bench.parse_preset(bad)
    doc = tmp_path / "BENCHMARKS.md"
    bench.write_section("main table", doc)
    bench.write_section("bg 30 table", doc, "bg30")
    bench.write_section("main again", doc)
    text = doc.read_text()
    assert "main again" in text and "main table" not in text and "bg 30 table" in text
    assert text.count("<!-- bench_accuracy:bg30:begin -->") == 1


def test_bench_accuracy_augmentation_flags():
    bench = tool("bench_accuracy")
    assert bench.augmentation(bench.parse_args([])) is True
    assert bench.augmentation(bench.parse_args(["--no-augment"])) is False
    extra = bench.augmentation(bench.parse_args(["--blur", "0.5", "--noise", "0.25"]))
    assert (extra.blur, extra.noise, extra.flip) == (0.5, 0.25, AugmentConfig().flip)
    assert "blur (p 0.5)" in bench.describe(extra) and bench.describe(True) == "on"
    boxes_only = bench.augmentation(bench.parse_args(["--box-blur", "0.5"]))
    assert (boxes_only.box_blur, boxes_only.blur) == (0.5, 0.0)
    assert bench.describe(boxes_only) == "on, plus blur inside the boxes (p 0.5, sigma 0.5-2)"
    with pytest.raises(SystemExit, match="drop --no-augment"):
        bench.augmentation(bench.parse_args(["--no-augment", "--blur", "0.5"]))


def test_bench_hybrid_mixes_the_regions_it_names(coco, tmp_path, capsys):
    import torch

    from rinr_bench.compare import write_lossless_shards
    from rinr_data.cli.decode import decoded_samples
    from rinr_data.convert import ConvertConfig, encode_dataset
    from rinr_data.core.frames import box_mask
    from rinr_data.sources import open_source

    hybrid = tool("bench_hybrid")
    a, b = torch.zeros(3, 6, 8, dtype=torch.uint8), torch.full((3, 6, 8), 9, dtype=torch.uint8)
    box = [[2.0, 2.0, 4.0, 4.0]]
    inside = box_mask(box, 6, 8)
    assert bool((hybrid.mix("boxes-original", a, b, box)[:, inside] == 0).all())
    assert bool((hybrid.mix("boxes-original", a, b, box)[:, ~inside] == 9).all())
    assert bool((hybrid.mix("boxes-codec", a, b, box) == hybrid.mix("boxes-original", b, a, box)).all())
    ring = hybrid.mix("ring-original:1", a, b, box)[0] == 0
    assert int(ring.sum()) == 16 - 4 and not bool((ring & inside).any())  # the 4x4 around the 2x2 box, less the box
    assert bool((hybrid.mix("codec", a, b, box) == b).all())
    with pytest.raises(ValueError, match="unknown mix"):
        hybrid.mix("ring", a, b, box)

    source = open_source(coco)
    original = write_lossless_shards(source, tmp_path / "original", shard_size=4)
    jpeg = tmp_path / "jpeg"
    encode_dataset(source, jpeg, ConvertConfig(codec="jpeg", quality=10, shard_size=4))
    mixed = hybrid.write_mix("boxes-original", jpeg, original, tmp_path / "mixed")
    for (key, out, meta), (_, orig, _), (_, dec, _) in zip(
        decoded_samples([mixed]), decoded_samples([original]), decoded_samples([jpeg])
    ):
        inside = box_mask(meta["boxes"], *out.shape[1:])
        assert bool((out[:, inside] == orig[:, inside]).all()) and bool((out[:, ~inside] == dec[:, ~inside]).all())
        assert bool((dec != orig).any()), key  # q10 JPEG differs, so the mix is not trivially the original
    with pytest.raises(SystemExit):
        hybrid.parse_args([str(jpeg), str(original), str(original), "--mixes", "codec,nope"])
    assert "unknown mix 'nope'" in capsys.readouterr().err


def test_bench_accuracy_scans_stock_codec_qualities_and_reports_bytes_at_parity(coco, tmp_path, capsys):
    args = ["--data", str(coco), "--train-frames", "4", "--val-frames", "2", "--seeds", "0,1", "--steps", "2"]
    args += ["--batch-size", "2", "--batch", "4", "--device", "cpu", "--work", str(tmp_path / "work"), "--quiet"]
    args += ["--presets", "grid", "--classic", "jpeg:20,60;webp:30", "--video", "vp9:30;vp9/1:30", "--parity", "0.05"]
    args += ["--plot", str(tmp_path / "parity.png"), *FAST_CODEC]
    bench = tool("bench_accuracy")
    assert bench.main(args) == 0
    text = capsys.readouterr().out
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| coco |")]
    main = {r[2].strip(): r for r in rows if len(r) == 14}
    videos = ["vp9-g32-crf30", "vp9-g1-crf30"]
    assert list(main) == [*bench.BASE_CONDITIONS, "jpeg-q20", "jpeg-q60", "webp-q30", *videos, "rinr-grid"]
    assert main["jpeg-q20"][3].strip() == "JPEG q20" and main["webp-q30"][3].strip() == "WebP q30"
    assert main["vp9-g1-crf30"][3].strip().startswith("VP9 (libvpx) all-intra, CRF 30; encode ")
    bytes_of = {name: float(r[4].replace(",", "")) for name, r in main.items()}
    for name in videos:  # a video's bytes are its stream's, not those of the lossless shards that hold its frames
        stream = shards.read_manifest(tmp_path / "work" / "coco" / f"{name}-m0-t4")["codec_config"]
        assert bytes_of[name] == round(stream["bytes_per_frame"]) and stream["frames"] == 4
    gap = {name: float(r[9].split("±")[0]) for name, r in main.items() if name != "original"}
    parity = {r[2].strip(): r for r in rows if len(r) == 10}
    inter, intra = "VP9 (libvpx) video, keyframe every 32", "VP9 (libvpx) all-intra"
    assert list(parity) == ["JPEG", "WebP", inter, intra, "RINR per frame"]
    families = [("JPEG", ["jpeg-psnr", "jpeg-bytes", "jpeg-q20", "jpeg-q60"]), ("WebP", ["webp-q30"])]
    for fam, members in [*families, (inter, videos[:1]), (intra, videos[1:])]:
        reached = [m for m in members if gap[m] >= -0.05 - 1e-3]  # the table prints 3 decimals
        cell = parity[fam][3].strip()
        if reached:
            assert float(cell.replace(",", "")) == min(bytes_of[m] for m in reached)
        else:
            assert cell == "not reached"
        assert int(parity[fam][8]) == len(members)
    from PIL import Image

    with Image.open(tmp_path / "parity.png") as plot:
        assert plot.size[0] > 300 and plot.size[1] > 200

    # Beside a stock scan, --no-match-jpeg trains only the originals and the RINR records (shards reused).
    args = ["--data", str(coco), "--train-frames", "4", "--val-frames", "2", "--seeds", "0", "--steps", "2"]
    args += ["--batch-size", "2", "--batch", "4", "--device", "cpu", "--work", str(tmp_path / "work"), "--quiet"]
    assert bench.main([*args, "--presets", "grid", "--no-match-jpeg", *FAST_CODEC]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| coco |")]
    assert [r[2].strip() for r in rows if len(r) == 14] == ["original", "rinr-grid"]


def test_bench_accuracy_classic_scan_syntax():
    bench = tool("bench_accuracy")
    assert bench.parse_classic("jpeg:9,5,9; avif:20") == [("jpeg", [5, 9]), ("avif", [20])]
    assert bench.parse_classic("") == []
    for bad in ("png:10", "jpeg:", "jpeg:0", "webp:a,b"):
        with pytest.raises(ValueError, match="bad --classic entry"):
            bench.parse_classic(bad)


def test_bytes_at_parity_takes_the_fewest_bytes_within_the_tolerance_per_family():
    from rinr_bench.bench_accuracy import Condition, parity
    from rinr_bench.compare import ShardStats
    from rinr_bench.experiment import RunResult

    def condition(name: str, size: float, maps: list[float]) -> Condition:
        stats = ShardStats("x", 4, size, 30.0, 30.0)
        runs = [RunResult(seed, 1.0, 8, m, m / 2) for seed, m in enumerate(maps)]
        return Condition(name, name, Path("."), object, stats, runs=runs)

    conditions = [
        condition("original", 9000, [0.80, 0.82]),
        condition("jpeg-q10", 1000, [0.70, 0.72]),  # -0.10: below parity
        condition("jpeg-q30", 2000, [0.80, 0.80]),  # -0.01 on average: at parity (the tolerance is inclusive)
        condition("jpeg-q60", 3000, [0.81, 0.83]),
        condition("avif-q20", 800, [0.75, 0.77]),  # the only AVIF: never at parity, reported as the closest
        condition("rinr-grid", 3500, [0.79, 0.81]),
        condition("rinr-grid+scene5", 2500, [0.70, 0.70]),
        condition("rinr-grid:600+scene5", 3000, [0.78, 0.80]),
    ]
    found = {p.family: p for p in parity(conditions, 0.01)}
    assert list(found) == ["JPEG", "AVIF", "RINR per frame", "RINR scene mode"]
    assert found["JPEG"].condition.name == "jpeg-q30" and found["JPEG"].tested == 3
    assert found["AVIF"].condition is None and found["AVIF"].best.name == "avif-q20"
    assert found["RINR per frame"].condition.name == "rinr-grid"
    assert found["RINR scene mode"].condition is None and found["RINR scene mode"].best.name == "rinr-grid:600+scene5"
