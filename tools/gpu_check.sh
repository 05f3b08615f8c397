#!/bin/bash
# One prepared GPU check, about 10 minutes on an H200 (docs/BENCHMARKS.md, "On a GPU"): the gpu tests, the fused
# synthesis tests and benchmark, encoding from scratch against warm starts, the loader benchmark (with and without the device cache, Pillow and nvJPEG), an
# encode estimate, then the codec (per frame) and scene-mode benchmarks. Each stage has its own time limit, so one slow stage never
# costs the others; every log line goes to OUT/stages.log.
#
#   tools/gpu_check.sh DATA OUT            the checks above
#   tools/gpu_check.sh DATA OUT accuracy   instead: the accuracy-parity benchmark at full size (384x288, 600 fitting
#                                          steps, 3 seeds; ~8 minutes by the encode speeds measured; needs vtest-long;
#                                          ACCURACY_ARGS="--box-blur 0.5 --background-sharpen 0.5" for the shared recipe)
#
# DATA holds vtest-dev/ and vtest-long/ (as ../shared/data does); OUT gets stages.log, BENCHMARKS.md (a copy of
# docs/BENCHMARKS.md with the GPU sections rewritten), JSON results and RD plots. Uses `python3` (set PYTHON to
# override) with the project importable (PYTHONPATH or an installed checkout). Through this workplace's device tool
# (64 MiB carried in all) take vtest-dev, the first 64 frames of vtest-long (annotations.json filtered to them) and
# the dependencies missing there as wheels; that is what the 2026-11-26 runs carried. For `accuracy` take the whole
# of vtest-long (38 MB) and leave the Pillow wheel behind (no AVIF needed) to stay under the limit.
set -u
if [ $# -lt 2 ] || [ $# -gt 3 ] || { [ $# -eq 3 ] && [ "$3" != accuracy ]; }; then
  sed -n 2,16p "$0"
  exit 2
fi
DATA=$1
OUT=$2
WHAT=${3:-checks}
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
LOG=$OUT/stages.log
cd "$ROOT" || exit 2
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  $PY -c "import torch, sys; print(torch.__version__, torch.cuda.get_device_name(), sys.version.split()[0])"; } > "$LOG" 2>&1
cp docs/BENCHMARKS.md "$OUT/BENCHMARKS.md"
# The compiled rANS coder (rinr_data/format/_rans.c) for this machine's Python: a PYTHONPATH checkout lacks it.
$PY setup.py -q build_ext --inplace >> "$LOG" 2>&1 || echo "building the rANS coder failed: see above" | tee -a "$LOG"

stage() {
  local name=$1 limit=$2 start
  shift 2
  start=$(date +%s)
  echo "=== $name start $(date +%T), limit $limit s" | tee -a "$LOG"
  PYTHONUNBUFFERED=1 timeout "$limit" "$@" >> "$LOG" 2>&1
  echo "=== $name rc=$? after $(( $(date +%s) - start )) s" | tee -a "$LOG"
}

if [ "$WHAT" = accuracy ]; then
  # ACCURACY_ARGS adds options, e.g. "--box-blur 0.5 --background-sharpen 0.5" for the second run (the encodings
  # are kept in --work).
  # shellcheck disable=SC2086
  stage accuracy 560 $PY tools/bench_accuracy.py --data "$DATA/vtest-long" --presets grid:600 --seeds 0,1,2 \
    --steps 300 --batch-size 8 --device cuda --work "${TMPDIR:-/tmp}/rinr-accuracy" --quiet \
    --figure "$OUT/accuracy_errors.png" ${ACCURACY_ARGS:-}
  grep -v "^\s*$" "$LOG" | tail -c 11000
  exit 0
fi
stage gputests 90 $PY -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_datamodules.py tests/test_cache.py
# Issue 23 and 25 stages first (never measured on a GPU), then the codec and scene benchmarks (measured on an H200
# on 2026-11-26): a call cut short by the device tool's 600 s limit still returns what the first stages wrote.
# Fused synthesis (issue 23 item 3): the Triton kernel against the PyTorch render on CUDA, then decode-only frames/s
# and GMAC/s of both paths against the FMA roofline (384x288 and 640x640, 16 and 64 frames; not yet timed on a GPU,
# estimated well under 60 s with the kernel's compile). The benchmark runs even when a test fails; rc is nonzero if
# either fails.
stage fused 60 bash -c "$PY -m pytest -q -m gpu -p no:cacheprovider tests/test_fused_synthesis.py; rc=\$?; \
  $PY tools/bench_synthesis.py --device cuda --json '$OUT/synthesis.json' || rc=\$?; exit \$rc"
# Warm starts (issue 25): 16 held-out vtest-long frames fitted from scratch and from a warm start learned on 8
# others, frames/s of each (the target is >= 10 frames/s warm); estimated ~150 s from the 2026-11-26 fitting speed.
# Eager here; the compiled step (the default for 384x288 frames) is its own stage below, as its compilation time
# on a GPU is not known yet.
stage encode 200 $PY tools/bench_encode.py --data "$DATA/vtest-long" --frames 16 --batch 16 --device cuda \
  --compile off --section bench_encode-gpu --write "$OUT/BENCHMARKS.md"
# --cache device: the RINR loader also runs from its device cache (issue 23), its own columns beside JPEG's; on CUDA
# JPEG is also decoded by batched nvJPEG; first the CPU ms per image of a loader worker and of the cached host.
stage loader 180 $PY tools/bench_loader.py --data "$DATA/vtest-long" --max-steps 100 --device cuda --workers 0,2,4 \
  --shard-size 25 --epochs 2 --repeat 2 --cache device
# rinr-encode --estimate on CUDA: the projected hours of a full run at the default settings, warm start included
# (issue 25).
stage estimate 90 $PY tools/encode.py "$DATA/vtest-dev" "$OUT/estimate-out" --device cuda --batch 8 --estimate 8
# The fitting step under torch.compile on CUDA (issue 25 item 2): warm fits only; the warm-up line gives the
# compilation time, the table the frames/s to set against the eager stage above. Each warm fit twice, in float32
# and with the render in bfloat16 (never run on CUDA: "auto" keeps CUDA at float32 until these rows show bytes and
# PSNRs within 0.1 dB of float32's at a speed-up).
stage encode-compiled 300 $PY tools/bench_encode.py --data "$DATA/vtest-long" --frames 16 --batch 16 --device cuda \
  --compile on --precision float32,bfloat16 --no-scratch --section bench_encode-gpu-compiled \
  --write "$OUT/BENCHMARKS.md"
stage codec 150 $PY tools/bench_codec.py --data "$DATA" --datasets vtest-dev --frames 8 --batch 8 --device cuda \
  --section grid-gpu --write "$OUT/BENCHMARKS.md" --plot "$OUT/rd.png" --json "$OUT/codec.json" --quiet
stage scene 270 $PY tools/bench_codec.py --data "$DATA" --datasets vtest-long --frames 32 --consecutive --scene \
  --scene-window 32 --device cuda --section grid-scene-gpu --write "$OUT/BENCHMARKS.md" --plot "$OUT/rd.png" \
  --json "$OUT/scene.json" --quiet
grep -v "^\s*$" "$LOG" | tail -c 11000
