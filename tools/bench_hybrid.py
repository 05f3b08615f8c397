#!/usr/bin/env python3
"""Which region of a codec's frames costs detector accuracy: train on decoded/original pixel mixes.

`python tools/bench_hybrid.py --help` lists the options; the logic is rinr_bench.bench_hybrid (installed by `make`).
"""

import sys

from rinr_bench.bench_hybrid import main

if __name__ == "__main__":
    sys.exit(main())
