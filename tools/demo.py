#!/usr/bin/env python3
"""Demo: the sample frames as RINR and JPEG shards, a detector trained briefly on each, one table.

`python tools/demo.py --help` lists the options; the logic is rinr_bench.demo (installed by `make`).
"""

import sys

from rinr_bench.demo import main

if __name__ == "__main__":
    sys.exit(main())
