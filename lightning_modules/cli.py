"""Training command line: LightningCLI over EdgeDetector and a shard data module chosen by class path.

`python tools/train.py fit --config configs/rinr.yaml` (or `python -m lightning_modules.cli ...`). The data module
is any ShardDataModule subclass given as `data.class_path` (RINRDataModule for .rinr shards, JPEGDataModule for the
JPEG baseline), so two configs that differ only in that line train the same detector on the two codecs.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from .data import ShardDataModule
from .detector import EdgeDetector

DESCRIPTION = (
    "Train the rinr-data edge detector (EdgeDetector) on shards read by a data module chosen by class path: "
    "lightning_modules.data.RINRDataModule (.rinr records) or JPEGDataModule (JPEG/WebP/AVIF). "
    "Example configs: configs/rinr.yaml, configs/jpeg.yaml."
)


class DetectorCLI(LightningCLI):
    """LightningCLI that checks, before running, that the model has as many classes as the shards' manifest."""

    def _check_classes(self) -> None:
        classes = getattr(self.datamodule, "classes", None)  # None when the shards come without a manifest
        num_classes = self.model.hparams.num_classes
        if classes is not None and len(classes) != num_classes:
            raise ValueError(
                f"model.num_classes is {num_classes} but the shards' manifest lists {len(classes)} "
                f"classes {classes}: set --model.num_classes={len(classes)}"
            )

    def before_fit(self) -> None:
        """Lightning hook: runs before `fit`."""
        self._check_classes()

    def before_validate(self) -> None:
        """Lightning hook: runs before `validate`."""
        self._check_classes()

    def before_test(self) -> None:
        """Lightning hook: runs before `test`."""
        self._check_classes()


def main(args: list[str] | None = None, run: bool = True) -> DetectorCLI:
    """Parse `args` (default: sys.argv), build model, data module and trainer, and run the subcommand if `run`."""
    return DetectorCLI(
        EdgeDetector,
        ShardDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": DESCRIPTION},
    )


if __name__ == "__main__":
    main()
