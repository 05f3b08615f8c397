#!/usr/bin/env python3
"""Fitting-speed benchmark of the grid preset: the fit's renderer against the decoder's.

`python tools/bench_fit.py --help` lists the options; the logic is rinr_bench.bench_fit (installed by `make`).
"""

import sys

from rinr_bench.bench_fit import main

if __name__ == "__main__":
    sys.exit(main())
