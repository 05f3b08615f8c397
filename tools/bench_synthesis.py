#!/usr/bin/env python3
"""Synthesis benchmark: frames/s and GMAC/s of the latent-grid render, PyTorch reference against the fused kernel.

`python tools/bench_synthesis.py --help` lists the options; the logic is rinr_bench.bench_synthesis (installed by
`make`).
"""

import sys

from rinr_bench.bench_synthesis import main

if __name__ == "__main__":
    sys.exit(main())
