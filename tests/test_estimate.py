"""rinr-encode's cost report: the --estimate sample run and its projection, the progress bar's rate, the run line."""

from __future__ import annotations

import io
import json

import pytest
import tqdm.std
from tiny_datasets import (
    TRUTH,
    one_torch_thread,  # noqa: F401 - autouse fixture
    write_coco,
)

from rinr_data import convert, shards
from rinr_data.cli.encode import main
from rinr_data.convert import ConvertConfig, estimate, frame_bar, full_run_batches, sample_indices
from rinr_data.sources import open_source

JPEG = ["--codec", "jpeg", "--no-progress"]


def many(n: int) -> dict:
    """n samples cycling through the tiny truth."""
    names = list(TRUTH)
    return {f"f{i:02d}": TRUTH[names[i % len(names)]] for i in range(n)}


def estimate_json(capsys, *args: str) -> dict:
    """Run rinr-encode --estimate --json and parse what it printed."""
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_sample_is_spread_over_the_dataset_in_whole_batches():
    assert sample_indices(10, 3) == [0, 5, 9]
    assert sample_indices(10, 1) == [4]
    # Runs of `batch` consecutive frames, as a real run batches them, first to last.
    assert sample_indices(20, 6, batch=2) == [0, 1, 9, 10, 18, 19]
    assert sample_indices(20, 5, batch=2) == [0, 1, 9, 10, 18, 19]  # rounded up to whole batches
    assert sample_indices(5, 8) == [0, 1, 2, 3, 4]
    assert sample_indices(6, 5, batch=2) == list(range(6))
    with pytest.raises(ValueError):
        sample_indices(5, 0)


def test_full_run_batches_stay_inside_shards():
    assert full_run_batches(10, 4, 2) == 5  # shards of 4, 4, 2
    assert full_run_batches(10, 4, 3) == 5  # 3 + 1, 3 + 1, 2
    assert full_run_batches(10, 1000, 3) == 4


def test_estimate_encodes_the_spread_sample_through_encode_dataset(tmp_path, monkeypatch):
    source = open_source(write_coco(tmp_path / "src", many(10)), "auto", None)
    seen = []
    real = convert.encode_dataset

    def spy(subset, out, config, **kwargs):
        seen.append(([item.key for item in subset.items], config))
        return real(subset, out, config, **kwargs)

    monkeypatch.setattr(convert, "encode_dataset", spy)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    config = ConvertConfig(codec="jpeg", quality=70, batch=1)
    est = estimate(source, config, 3, tmp_dir=scratch)
    [(keys, used)] = seen
    assert keys == ["f00", "f05", "f09"] and est.sample == [0, 5, 9]
    assert used.codec_settings() == config.codec_settings() and used.batch == config.batch
    assert not list(scratch.iterdir())  # the sample's shards were temporary
    assert est.frames == 10 and est.failed == 0 and est.codec == "jpeg" and est.device == "cpu"
    assert est.object_psnr is not None and est.background_psnr is not None


def test_estimate_does_not_create_out_and_prints_a_table(tmp_path, capsys):
    src = write_coco(tmp_path / "src", many(10))
    out = tmp_path / "out"
    assert main([str(src), str(out), *JPEG, "--batch", "1", "--estimate", "3"]) == 0
    assert not out.exists()
    table = capsys.readouterr().out
    for row in ("sample", "machine", "time", "size", "PSNR", "projected"):
        assert any(line.startswith(row) for line in table.splitlines()), row
    assert "10 frames" in table and "indices 0, 5, 9" in table


def test_projection_is_the_measured_rates_times_the_whole_run(tmp_path, capsys):
    src = write_coco(tmp_path / "src", many(10))
    est = estimate_json(
        capsys, str(src), str(tmp_path / "out"), *JPEG, "--batch", "2", "--shard-size", "4", "--estimate"
    )
    assert not (tmp_path / "out").exists()
    # 16 frames asked of 10: the whole dataset is the sample.
    assert est["frames"] == 10 and est["sample"] == list(range(10)) and est["batch"] == 2
    assert est["batches"] == 5 and est["shards"] == 3
    assert est["projected_bytes"] == pytest.approx(est["frames"] * est["bytes_per_frame"])
    assert est["projected_seconds"] == pytest.approx(est["startup_seconds"] + est["batches"] * est["seconds_per_batch"])
    assert est["seconds_per_frame"] == pytest.approx(est["seconds_per_batch"] / 2)
    assert est["projected_hours"] == pytest.approx(est["projected_seconds"] / 3600)
    assert est["cpus"] >= 1 and est["device"] == "cpu" and est["settings"]["shard_size"] == 4


def test_sample_of_the_whole_dataset_projects_the_real_shard_bytes(tmp_path, capsys):
    src = write_coco(tmp_path / "src")
    est = estimate_json(capsys, str(src), str(tmp_path / "out"), *JPEG, "--estimate", "50")
    assert est["sample"] == [0, 1, 2]
    assert main([str(src), str(tmp_path / "out"), *JPEG]) == 0
    manifest = shards.read_manifest(tmp_path / "out")
    # JPEG is deterministic: tar headers, padding and end blocks projected exactly.
    assert est["projected_bytes"] == sum(s["bytes"] for s in manifest["shards"])


def test_rinr_estimate_uses_the_chosen_settings(tmp_path, capsys):
    src = write_coco(tmp_path / "src", many(6))
    args = ["--max-steps", "3", "--batch", "2", "--device", "cpu", "--no-progress", "--estimate", "4"]
    est = estimate_json(capsys, str(src), str(tmp_path / "out"), *args)
    assert not (tmp_path / "out").exists()
    assert est["codec"] == "rinr" and est["settings"]["codec_config"]["max_steps"] == 3 and est["batch"] == 2
    assert est["sample"] == [0, 1, 4, 5] and est["batches"] == 3 and est["device"] == "cpu"
    assert est["object_psnr"] > 0 and est["background_psnr"] > 0
    assert est["projected_bytes"] == pytest.approx(6 * est["bytes_per_frame"])


def test_estimate_usage_errors(tmp_path, capsys):
    src = write_coco(tmp_path / "src")
    with pytest.raises(SystemExit):
        main([str(src), str(tmp_path / "out"), *JPEG, "--estimate", "0"])
    with pytest.raises(SystemExit):
        main([str(src), str(tmp_path / "out"), *JPEG, "--json"])
    assert "--json applies to --estimate only" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- a real run


def test_run_ends_with_frames_and_frames_per_second(tmp_path, capsys):
    src = write_coco(tmp_path / "src")
    assert main([str(src), str(tmp_path / "out"), *JPEG]) == 0
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("encoded "))
    assert line.startswith("encoded 3 frame(s) in ") and "frames/s" in line
    size = sum(s["bytes"] for s in shards.read_manifest(tmp_path / "out")["shards"])
    assert f"{size / 3:,.0f} bytes/frame in shards" in line


class Interrupted(Exception):
    pass


def test_resumed_run_counts_only_the_frames_it_encoded(tmp_path, capsys):
    src = write_coco(tmp_path / "src", many(5))
    args = [str(src), str(tmp_path / "out"), *JPEG, "--shard-size", "2"]

    def stop_after_three(shard: int, key: str) -> None:
        if key == "f02":  # shard 0 complete, shard 1 partial
            raise Interrupted

    with pytest.raises(Interrupted):
        main(args, on_sample=stop_after_three)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "1 complete shard(s) kept, 2 to encode" in err
    assert "encoded 3 frame(s) in " in err  # shards 1 and 2, not the kept shard 0
    assert main(args) == 0
    assert "encoded 0 frames: every shard was already complete" in capsys.readouterr().err


def test_resumed_bar_rate_and_eta_count_only_this_runs_frames(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])
    bar = frame_bar(100, 60, file=io.StringIO())
    for t in range(1, 11):  # 10 frames in 10 (fake) seconds, after 60 frames of earlier runs
        clock[0] = float(t)
        bar.update(1)
    meter = bar.format_meter(**bar.format_dict)
    bar.close()
    # 1 frame/s, 30 frames left: 30 s; counting the 60 kept frames would claim 7 frames/s and 4 s left.
    assert "70/100" in meter and "1.00frame/s" in meter and "<00:30" in meter
