"""From a checkout, `python tools/inspect_shards.py` runs the rinr-inspect console script (rinr_data.cli)."""

import sys

from rinr_data.cli.inspect_shards import main

if __name__ == "__main__":
    sys.exit(main())
