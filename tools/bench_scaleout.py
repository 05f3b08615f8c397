#!/usr/bin/env python3
"""Encoding scale-out under torchrun: N processes against one on the same frames.

`python tools/bench_scaleout.py --help` lists the options; the logic is rinr_bench.bench_scaleout (installed by `make`).
"""

import sys

from rinr_bench.bench_scaleout import main

if __name__ == "__main__":
    sys.exit(main())
