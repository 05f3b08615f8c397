#!/usr/bin/env python3
"""Codec benchmark: bytes, PSNR and speed of each preset against JPEG/WebP/AVIF and ROI baselines.

`python tools/bench_codec.py --help` lists the options; the logic is rinr_bench.bench_codec (installed by `make`).
"""

import sys

from rinr_bench.bench_codec import main

if __name__ == "__main__":
    sys.exit(main())
