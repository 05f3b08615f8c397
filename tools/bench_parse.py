#!/usr/bin/env python3
"""Parse benchmark: bytes and one-core parse time of latent-grid records under each entropy coder.

`python tools/bench_parse.py --help` lists the options; the logic is rinr_bench.bench_parse (installed by `make`).
"""

import sys

from rinr_bench.bench_parse import main

if __name__ == "__main__":
    sys.exit(main())
