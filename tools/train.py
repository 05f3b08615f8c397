#!/usr/bin/env python3
"""Train the edge detector on rinr-data shards: `python tools/train.py fit --config configs/rinr.yaml`.

From a checkout, runs lightning_modules.cli (LightningCLI over EdgeDetector and RINRDataModule / JPEGDataModule);
`--help` lists the subcommands, `fit --help` every model, data and trainer option.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_modules.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
