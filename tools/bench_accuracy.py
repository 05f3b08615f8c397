#!/usr/bin/env python3
"""Accuracy parity: detectors trained on RINR, JPEG and original frames, evaluated on the originals.

`python tools/bench_accuracy.py --help` lists the options; the logic is rinr_bench.bench_accuracy (installed by `make`).
"""

import sys

from rinr_bench.bench_accuracy import main

if __name__ == "__main__":
    sys.exit(main())
