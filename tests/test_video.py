"""Video-codec baselines (rinr_bench.video): a frame sequence coded as one AV1 / VP9 stream, decoded back, stored."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_datasets import TRUTH, write_coco

from rinr_bench import video
from rinr_bench.compare import shard_stats
from rinr_data import shards
from rinr_data.core.metrics import psnr
from rinr_data.sources import open_source

pytest.importorskip("av", reason="PyAV is in the dev extra")


def moving_square(n: int, height: int = 64, width: int = 64) -> list[torch.Tensor]:
    """A static textured background with a square moving across it: what inter frames code cheaply."""
    g = torch.Generator().manual_seed(0)
    background = (torch.rand(3, height // 8, width // 8, generator=g) * 200 + 20).to(torch.uint8)
    background = background.repeat_interleave(8, 1).repeat_interleave(8, 2)
    frames = []
    for i in range(n):
        frame = background.clone()
        frame[:, 20:36, 4 + 3 * i : 20 + 3 * i] = torch.tensor([250, 30, 30], dtype=torch.uint8)[:, None, None]
        frames.append(frame)
    return frames


@pytest.mark.parametrize("codec", ["av1", "vp9"])
def test_inter_frames_cost_fewer_bytes_than_all_intra_and_decode_to_the_frames(codec):
    frames = moving_square(8)
    inter = video.encode_video(frames, video.VideoSpec(codec, 30, gop=8), random_access=0)
    intra = video.encode_video(frames, video.VideoSpec(codec, 30, gop=1), random_access=3)
    for coded in (inter, intra):
        assert len(coded.frames) == len(frames)
        assert all(f.shape == frames[0].shape and f.dtype == torch.uint8 for f in coded.frames)
        # Decoded in the input's order: each frame is closest to its own original.
        for i, f in enumerate(coded.frames):
            scores = [psnr(o, f) for o in frames]
            assert scores.index(max(scores)) == i and scores[i] > 24  # 4:2:0 halves the colour edges
        assert coded.nbytes > 0 and coded.decode_ms > 0 and coded.random_access_ms > 0
        assert coded.bytes_per_frame == coded.nbytes / len(frames)
    assert inter.nbytes < intra.nbytes


def test_video_specs_parse_and_name_their_family():
    specs = video.parse_video("av1:45,55; av1/1:50 ;vp9/16:40")
    assert [s.name for s in specs] == ["av1-g32-crf45", "av1-g32-crf55", "av1-g1-crf50", "vp9-g16-crf40"]
    assert specs[2].family == "AV1 (SVT-AV1) all-intra"
    assert specs[0].family == "AV1 (SVT-AV1) video, keyframe every 32" != specs[3].family
    assert video.parse_video("") == []
    for bad in ("h264:30", "av1:", "av1", "av1:64", "vp9/0:30", "av1:a"):
        with pytest.raises(ValueError, match="bad --video entry"):
            video.parse_video(bad)


def test_frames_must_share_an_even_size():
    with pytest.raises(ValueError, match="even width and height"):
        video.encode_video([torch.zeros(3, 63, 64, dtype=torch.uint8)], video.VideoSpec("vp9", 30))
    with pytest.raises(ValueError, match="one size"):
        video.encode_video(
            [torch.zeros(3, 64, 64, dtype=torch.uint8), torch.zeros(3, 32, 64, dtype=torch.uint8)],
            video.VideoSpec("vp9", 30),
        )
    with pytest.raises(ValueError, match="at least one frame"):
        video.encode_video([], video.VideoSpec("vp9", 30))


def test_video_shards_hold_the_decoded_frames_and_the_stream_bytes(tmp_path, monkeypatch):
    root = write_coco(tmp_path / "coco", {f"f{i}": TRUTH[("img_a", "img_b", "img_c")[i % 3]] for i in range(4)})
    source = open_source(root)
    spec = video.VideoSpec("vp9", 20, gop=4)
    cost = video.write_video_shards(source, tmp_path / "v", spec, shard_size=3)
    assert cost["video"] == spec.name and cost["frames"] == 4 and cost["bytes_per_frame"] == cost["bytes"] / 4
    manifest = shards.read_manifest(tmp_path / "v")
    assert manifest["codec_config"] == json.loads(json.dumps(cost)) and len(manifest["shards"]) == 2
    stats = shard_stats(tmp_path / "v")
    # The stored frames are the decoded ones: lossy PSNRs in every sample's JSON, not the originals' 999.
    assert stats.frames == 4 and 15 < stats.object_psnr < 90 and 15 < stats.background_psnr < 90
    # A second call with the same spec reuses the shards; another spec codes again.
    monkeypatch.setattr(video, "encode_video", lambda *a, **k: pytest.fail("re-coded a finished folder"))
    assert video.write_video_shards(source, tmp_path / "v", spec) == json.loads(json.dumps(cost))
    with pytest.raises(pytest.fail.Exception, match="re-coded"):
        video.write_video_shards(source, tmp_path / "v", video.VideoSpec("vp9", 30, gop=4))


def test_stored_images_must_match_the_frames(tmp_path):
    from rinr_bench.compare import write_lossless_shards

    root = write_coco(tmp_path / "coco", {"f0": TRUTH["img_a"], "f1": TRUTH["img_b"]})
    source = open_source(root)
    with pytest.raises(ValueError, match="1 images for 2 frames"):
        write_lossless_shards(source, tmp_path / "a", images=[torch.zeros(3, 24, 32, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="image \\(3, 8, 8\\) for a 32x24 frame"):
        write_lossless_shards(source, tmp_path / "b", images=[torch.zeros(3, 8, 8, dtype=torch.uint8)] * 2)
    assert np.isfinite(shard_stats(write_lossless_shards(source, tmp_path / "c")).bytes_per_frame)
