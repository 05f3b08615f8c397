#!/usr/bin/env python3
"""Encoding throughput: fits from scratch against fits from a warm start on the same held-out frames.

`python tools/bench_encode.py --help` lists the options; the logic is rinr_bench.bench_encode (installed by `make`).
"""

import sys

from rinr_bench.bench_encode import main

if __name__ == "__main__":
    sys.exit(main())
