"""From a checkout, `python tools/decode.py` runs the rinr-decode console script (rinr_data.cli.decode)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rinr_data.cli.decode import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
