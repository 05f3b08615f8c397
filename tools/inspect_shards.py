"""From a checkout, `python tools/inspect_shards.py` runs the rinr-inspect console script."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rinr_data.cli.inspect_shards import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
