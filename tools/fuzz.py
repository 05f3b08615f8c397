#!/usr/bin/env python3
"""Coverage-guided fuzzing of the record, shard and annotation readers (atheris, from the dev extras).

`python tools/fuzz.py --help` lists the targets and options; the logic is rinr_bench.fuzz (installed by `make`).
"""

import sys

from rinr_bench.fuzz import main

if __name__ == "__main__":
    sys.exit(main())
