"""Conversion stages on plain lists, the run configuration, resume state, and an in-process crash-and-resume."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tiny_datasets import (
    one_torch_thread,  # noqa: F401 - autouse fixture
    write_coco,
)

from rinr_data import shards
from rinr_data.codecs import GridConfig, PaperConfig
from rinr_data.convert import (
    MAX_AUTO_JOBS,
    ConvertConfig,
    check_state,
    encode_dataset,
    encode_stage,
    load_stage,
    plan_shards,
    sample_encoder,
    stop_on_error,
)
from rinr_data.errors import ResumeError
from rinr_data.sources import LoadedSample, SampleError, SourceItem, open_source

FAST = GridConfig(max_steps=10)


def item(key: str, error: str | None = None) -> SourceItem:
    return SourceItem(key, f"{key}.png", Path(f"{key}.png"), error=error)


def loaded(it: SourceItem) -> LoadedSample:
    if it.error:
        raise SampleError(it.error)
    return LoadedSample(it, np.full((4, 6, 3), 7, np.uint8), np.zeros((0, 4)), [], [f"note on {it.key}"])


def test_load_stage_keeps_order_logs_warnings_and_hands_failures_over():
    items = [item("a"), item("b", "b.png: broken"), item("c"), item("d")]
    failures, logs = [], []
    with ThreadPoolExecutor(2) as pool:
        out = list(
            load_stage(items, loaded, pool, lambda it, e: failures.append((it.key, str(e))), logs.append, ahead=2)
        )
    assert [s.item.key for s in out] == ["a", "c", "d"]
    assert failures == [("b", "b.png: broken")]
    assert logs == ["warning: note on a", "warning: note on c", "warning: note on d"]
    with ThreadPoolExecutor(1) as pool, pytest.raises(SampleError, match="broken"):
        list(load_stage(items, loaded, pool, stop_on_error, logs.append))


def test_encode_stage_isolates_the_sample_that_breaks_a_batch():
    calls = []

    def encode(batch):
        calls.append([s.item.key for s in batch])
        if any(s.item.key == "b" for s in batch):
            raise RuntimeError("nan in fit")
        return [shards.ShardSample(s.item.key, "rinr", b"x", {}) for s in batch]

    failures = []
    samples = [loaded(item(k)) for k in "abcde"]
    out = list(encode_stage(samples, encode, 2, lambda it, e: failures.append(str(e))))
    assert [s.key for s in out] == ["a", "c", "d", "e"]
    assert calls == [["a", "b"], ["a"], ["b"], ["c", "d"], ["e"]]
    assert failures == ["b.png: encoding failed: RuntimeError: nan in fit"]


def test_encode_stage_in_flight_keeps_order_and_isolates_failures():
    lock, running, most = threading.Lock(), [0], [0]

    def encode(batch):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.02 * (5 - len(batch) - ord(batch[0].item.key) % 3))  # later batches may finish first
            if any(s.item.key == "d" for s in batch):
                raise RuntimeError("nan in fit")
            return [shards.ShardSample(s.item.key, "rinr", b"x", {}) for s in batch]
        finally:
            with lock:
                running[0] -= 1

    failures = []
    samples = [loaded(item(k)) for k in "abcdefghij"]
    with ThreadPoolExecutor(3) as jobs:
        out = list(encode_stage(samples, encode, 2, lambda it, e: failures.append(str(e)), jobs, in_flight=3))
    assert [s.key for s in out] == list("abcefghij")
    assert failures == ["d.png: encoding failed: RuntimeError: nan in fit"]
    assert 1 < most[0] <= 3


def test_fitting_jobs():
    assert ConvertConfig(codec_config=GridConfig(device="cpu")).fitting_jobs(2) == 2
    assert ConvertConfig(codec_config=GridConfig(device="cpu")).fitting_jobs(16) == MAX_AUTO_JOBS
    assert ConvertConfig(codec_config=GridConfig(device="cpu")).fitting_jobs(1) == 1
    assert ConvertConfig(codec_config=GridConfig(device="cpu"), jobs=3).fitting_jobs(16) == 3
    assert ConvertConfig(codec="jpeg").fitting_jobs(16) == 1
    with pytest.raises(ValueError, match="jobs must be >= 0"):
        ConvertConfig(jobs=-1)


def test_concurrent_jobs_write_the_shards_one_job_writes(tmp_path):
    source = open_source(write_coco(tmp_path / "src"))
    made = {}
    for jobs in (1, 2):
        config = ConvertConfig(codec_config=FAST, shard_size=5, batch=1, jobs=jobs)
        result = encode_dataset(source, tmp_path / f"jobs{jobs}", config, progress=False, log=lambda m: None)
        assert result.frames == 3
        found, _ = shards.find_shards([tmp_path / f"jobs{jobs}"])
        made[jobs] = [(s["__key__"], s["rinr"], s["json"]) for path in found for s in shards.iter_shard(path)]
    assert [key for key, *_ in made[2]] == ["img_a", "img_b", "img_c"]
    assert made[1] == made[2]  # one torch thread per fit either way: the same bytes, in the same order
    # One batch for the whole run (a long scene): one job, which keeps every torch thread.
    said = []
    config = ConvertConfig(codec_config=FAST, shard_size=5, batch=5, jobs=2)
    assert encode_dataset(source, tmp_path / "one", config, progress=False, log=said.append).frames == 3
    assert not any("batches at once" in m for m in said)


def test_classic_encoder_reports_region_psnr():
    s = loaded(item("a"))
    s.boxes = np.array([[1.0, 1.0, 3.0, 3.0]])
    s.labels = [0]
    with ThreadPoolExecutor(1) as pool:
        (out,) = sample_encoder(*ConvertConfig(codec="jpeg", quality=90).encoder(), pool)([s])
    assert out.codec == "jpeg" and out.image[:2] == b"\xff\xd8"
    assert out.meta["object_psnr"] == shards.PSNR_LOSSLESS  # a flat image codes losslessly; JSON has no inf
    assert out.meta["background_psnr"] == shards.PSNR_LOSSLESS and out.meta["boxes"] == [[1.0, 1.0, 3.0, 3.0]]


def test_config_validation_and_resume_settings():
    with pytest.raises(ValueError, match="valid codecs"):
        ConvertConfig(codec="png")
    with pytest.raises(ValueError, match="not rinr"):
        ConvertConfig(quality=50)
    with pytest.raises(ValueError, match="quality must be in 1..100"):
        ConvertConfig(codec="jpeg", quality=0)
    with pytest.raises(ValueError, match="shard prefix"):
        ConvertConfig(prefix="a.b")
    a = ConvertConfig(codec_config=GridConfig(device="cpu"), workers=1, on_error="stop")
    b = ConvertConfig(codec_config=GridConfig(device="auto"), workers=4, on_error="skip")
    assert a.settings() == b.settings()  # where and how robustly it runs does not change the shards
    assert a.settings() != ConvertConfig(batch=2).settings()
    assert ConvertConfig(codec="avif").effective_quality == 80
    assert [list(r) for r in plan_shards(5, 2)] == [[0, 1], [2, 3], [4]]


def test_state_mismatch_names_the_differing_arguments(tmp_path):
    source = open_source(write_coco(tmp_path / "src"))
    out = tmp_path / "out"
    out.mkdir()
    assert check_state(out, source, ConvertConfig(shard_size=2)) is None
    assert check_state(out, source, ConvertConfig(shard_size=2)) is None
    msg = check_state(out, source, ConvertConfig(shard_size=3, codec_config=GridConfig(max_steps=5)))
    assert "settings.shard_size is 3 now, was 2" in msg and "settings.codec_config.max_steps is 5" in msg
    (tmp_path / "src" / "images" / "img_a.png").unlink()
    (tmp_path / "src" / "images" / "img_a.png").write_bytes(b"")  # same names: no fingerprint change
    assert check_state(out, open_source(tmp_path / "src"), ConvertConfig(shard_size=2)) is None


def test_existing_shards_without_state_are_not_overwritten(tmp_path):
    source = open_source(write_coco(tmp_path / "src"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "shard-000000.tar").write_bytes(b"")
    with pytest.raises(ResumeError, match="no resume state"):
        encode_dataset(source, tmp_path / "out", ConvertConfig(), progress=False)


def test_crash_mid_shard_then_resume_gives_the_uninterrupted_result(tmp_path):
    source = open_source(write_coco(tmp_path / "src"))
    config = ConvertConfig(codec_config=FAST, shard_size=2, batch=2)
    whole = encode_dataset(source, tmp_path / "whole", config, progress=False)

    def crash(shard, key):
        if key == "img_c":
            raise KeyboardInterrupt  # in the middle of shard 1, after its first sample was written

    with pytest.raises(KeyboardInterrupt):
        encode_dataset(source, tmp_path / "part", config, progress=False, on_sample=crash)
    assert sorted(p.name for p in (tmp_path / "part").glob("*.tar")) == ["shard-000000.tar"]
    resumed = encode_dataset(source, tmp_path / "part", config, progress=False)
    assert resumed.written == ["shard-000001.tar"] and resumed.already_complete == ["shard-000000.tar"]
    assert (tmp_path / "part" / "manifest.json").read_text() == (tmp_path / "whole" / "manifest.json").read_text()
    assert whole.samples == resumed.samples == 3


def test_resume_state_holds_what_the_codec_reads():
    paper = PaperConfig()
    settings = ConvertConfig(codec_config=paper).settings()["codec_config"]
    assert settings["preset"] == "paper" and "device" not in settings and "latent_lr" not in settings
    assert settings == ConvertConfig(codec_config=paper.replace(device="auto")).settings()["codec_config"]
    grid = GridConfig()
    settings = ConvertConfig(codec_config=grid).settings()["codec_config"]
    assert settings["preset"] == "grid" and "pixels_per_step" not in settings and "w0" not in settings
    assert (
        ConvertConfig(codec_config=grid).settings()
        != ConvertConfig(codec_config=grid.replace(latent_lr=0.5)).settings()
    )
