"""The CUDA paths against the CPU reference: decode, batched decode, fitting, scenes and the dataset.

Marked `gpu`: reported as skipped where no CUDA device exists, run on a GPU machine with `pytest -m gpu`.
"""

from __future__ import annotations

import pytest
import torch
from conftest import smooth_frame
from shard_fixtures import write_dataset
from test_codec import CONFIGS  # the CPU codec tests' configs, so both paths fit alike

import rinr_data as R
from rinr_data.core.metrics import region_psnr
from rinr_data.pipeline.dataset import RINRDataset
from rinr_data.pipeline.loader import RINRLoader

pytestmark = pytest.mark.gpu

FRAMES = [smooth_frame(24, 32, seed=s) for s in range(3)] + [smooth_frame(17, 23, seed=9)]
BOXES = [[[1, 1, 8, 9]], [], [[3, 3, 20, 20], [10, 2, 31, 12]], [[0, 15.5, 3, 17]]]


def _close_to_cpu(cuda: torch.Tensor, cpu: torch.Tensor) -> None:
    # Float sums run in another order on the GPU, so a pixel may round to the neighbouring level; never further.
    assert cuda.device.type == "cuda" and cuda.dtype == cpu.dtype == torch.uint8
    diff = (cuda.cpu().int() - cpu.int()).abs()
    assert int(diff.max()) <= 1
    assert float((diff > 0).float().mean()) < 0.01


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def blobs(request) -> list[bytes]:
    """Records of both presets, fitted on the CPU."""
    return R.encode_batch(FRAMES, BOXES, CONFIGS[request.param])


def test_decode_on_cuda_matches_cpu(blobs):
    for blob, batched in zip(blobs, R.decode_batch(blobs, "cuda")):
        cpu = R.decode(blob, "cpu")
        _close_to_cpu(R.decode(blob, "cuda"), cpu)
        _close_to_cpu(batched, cpu)


@pytest.mark.parametrize("preset", sorted(CONFIGS))
def test_fitting_on_cuda_gives_records_the_cpu_decodes(preset):
    config = CONFIGS[preset].replace(device="cuda")
    encoded = R.encode_frames(FRAMES[:2], BOXES[:2], config)
    for frame, image, boxes in zip(encoded, FRAMES, BOXES):
        decoded = R.decode(frame.blob, "cpu")
        q = region_psnr(torch.from_numpy(image).permute(2, 0, 1), decoded, boxes)
        # What the encoder measured on the GPU is what a CPU-only edge box gets, to rounding of a level.
        assert q.full == pytest.approx(frame.full_psnr, abs=0.05)
        assert q.background >= config.background_psnr - 0.05


def test_bfloat16_fits_on_cuda_reach_what_float32_fits_reach():
    # precision "auto" keeps CUDA at float32 until gpu_check.sh measures bfloat16 there; the explicit mode must work.
    config = CONFIGS["grid"].replace(device="cuda", compile="off")
    single = R.encode_frames(FRAMES[:2], BOXES[:2], config.replace(precision="float32"))
    low = R.encode_frames(FRAMES[:2], BOXES[:2], config.replace(precision="bfloat16"))
    for a, b, image, boxes in zip(single, low, FRAMES, BOXES):
        q = region_psnr(torch.from_numpy(image).permute(2, 0, 1), R.decode(b.blob, "cpu"), boxes)
        assert q.full == pytest.approx(b.full_psnr, abs=0.05)
        assert q.background >= config.background_psnr - 0.05
        assert len(b.blob) == pytest.approx(len(a.blob), rel=0.05)


def test_scene_records_decode_alike_on_cuda_and_cpu():
    config = CONFIGS["grid"].replace(device="cuda", scene=R.SceneConfig(window=3))
    frames = [smooth_frame(24, 32, seed=4)] * 3
    boxes = [[[2, 2, 10, 12]], [[4, 3, 12, 13]], [[6, 4, 14, 14]]]
    scenes, records = R.encode_sequence(frames, boxes, config)
    assert len(scenes) == 1
    for blob, batched in zip(records, R.decode_batch(records, "cuda", scenes)):
        _close_to_cpu(batched, R.decode(blob, "cpu", scenes))


def test_dataset_decoding_on_cuda_gives_the_cpu_batches(tmp_path):
    write_dataset(tmp_path, count=7, shard_size=3)
    cpu = list(RINRLoader(RINRDataset(tmp_path, batch_size=3, shuffle=False, device="cpu")))
    cuda = list(RINRLoader(RINRDataset(tmp_path, batch_size=3, shuffle=False, device="cuda")))
    assert [b["keys"] for b in cuda] == [b["keys"] for b in cpu]
    for a, b in zip(cuda, cpu):
        assert a["images"].is_cuda
        torch.testing.assert_close(a["images"].cpu(), b["images"], atol=1 / 255 + 1e-6, rtol=0)
        assert all(torch.equal(ta["boxes"].cpu(), tb["boxes"]) for ta, tb in zip(a["targets"], b["targets"]))


def test_warm_started_fits_on_cuda_give_records_the_cpu_decodes():
    # The default path of issue 25: a warm start learned on the device and short fits from it (eager: the compiled
    # step on CUDA is gpu_check.sh's encode-compiled stage, whose compilation would not fit this stage's limit).
    config = CONFIGS["grid"].replace(warm_steps=60, compile="off")
    on_cuda = config.replace(device="cuda")
    learned = R.warm_up(FRAMES[:2], BOXES[:2], on_cuda)
    encoded = R.encode_frames(FRAMES[2:3], BOXES[2:3], learned)
    assert 60 <= encoded[0].steps["grid"] <= 80  # the budget, plus a top-up of up to a third if short
    decoded = R.decode(encoded[0].blob, "cpu")
    q = region_psnr(torch.from_numpy(FRAMES[2]).permute(2, 0, 1), decoded, BOXES[2])
    assert q.full == pytest.approx(encoded[0].full_psnr, abs=0.05)
    # A warm start learned on the CPU serves a CUDA fit (it is saved with the shards and read on any device).
    from_cpu = R.warm_up(FRAMES[:2], BOXES[:2], config).replace(device="cuda")
    moved = R.encode_frames(FRAMES[2:3], BOXES[2:3], from_cpu)[0]
    _close_to_cpu(R.decode(moved.blob, "cuda"), R.decode(moved.blob, "cpu"))
