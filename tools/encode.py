"""From a checkout, `python tools/encode.py` runs the rinr-encode console script (rinr_data.cli.encode)."""

import sys

from rinr_data.cli.encode import main

if __name__ == "__main__":
    sys.exit(main())
