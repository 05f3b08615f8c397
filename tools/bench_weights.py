#!/usr/bin/env python3
"""Weight-coding study: PSNR lost per bit allocation and bytes/decode time per entropy coder.

`python tools/bench_weights.py --help` lists the options; the logic is rinr_bench.bench_weights (installed by `make`).
"""

import sys

from rinr_bench.bench_weights import main

if __name__ == "__main__":
    sys.exit(main())
