"""From a checkout, `python tools/decode.py` runs the rinr-decode console script (rinr_data.cli.decode)."""

import sys

from rinr_data.cli.decode import main

if __name__ == "__main__":
    sys.exit(main())
