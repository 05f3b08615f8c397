#!/usr/bin/env python3
"""Loader benchmark: images/s that RINR and JPEG shards deliver into a fixed training step.

`python tools/bench_loader.py --help` lists the options; the logic is rinr_bench.bench_loader (installed by `make`).
"""

import sys

from rinr_bench.bench_loader import main

if __name__ == "__main__":
    sys.exit(main())
