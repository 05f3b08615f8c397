"""From a checkout, `python tools/encode.py` runs the rinr-encode console script (rinr_data.cli.encode)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rinr_data.cli.encode import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
