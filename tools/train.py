#!/usr/bin/env python3
"""Train the edge detector on rinr-data shards: `python tools/train.py fit --config configs/rinr.yaml`.

Runs lightning_modules.cli (LightningCLI over EdgeDetector and RINRDataModule / JPEGDataModule);
`--help` lists the subcommands, `fit --help` every model, data and trainer option.
"""

from lightning_modules.cli import main

if __name__ == "__main__":
    main()
