"""Lightning data modules over rinr-data shards: RINRDataModule (.rinr records) and JPEGDataModule (the baseline).

Both build the same pipeline - RINRDataset in CPU workers, RINRLoader decoding on the trainer's device in the main
process - and deliver the same batch dict, so switching a training script between them is a change of class name
(and shard folder). They differ only in the member codec they accept. See docs/LOADING.md.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from rinr_data.codecs import RECORD_MEMBER
from rinr_data.codecs.classic import CLASSIC_CODECS
from rinr_data.errors import WrongCodecError
from rinr_data.pipeline.augment import AugmentConfig
from rinr_data.pipeline.cache import DEFAULT_CACHE_BYTES
from rinr_data.pipeline.dataset import RINRDataset
from rinr_data.pipeline.loader import RINRLoader
from rinr_data.pipeline.samples import ParsedSample, parse_sample
from rinr_data.pipeline.shardlist import resolve_shards
from rinr_data.pipeline.stages import ON_ERROR
from rinr_data.pipeline.streaming import FetchPolicy
from rinr_data.shards import image_member

RINR_CODECS = (RECORD_MEMBER,)


class CodecDataset(RINRDataset):
    """A RINRDataset that only accepts members of `codecs`; any other is a FormatError naming the shard.

    A wrong codec is a configuration mistake, not a damaged sample: it raises whatever `on_error` says.

    Args:
        *args, **kwargs: as RINRDataset.
        codecs: accepted image-member codecs ("rinr", "jpeg", "webp", "avif").
        owner: name used in error messages (the data module's class).
        encoded_jpeg: leave JPEG members undecoded for a decode on the device (nvJPEG) in the main process.
    """

    def __init__(
        self, *args: Any, codecs: Sequence[str], owner: str, encoded_jpeg: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.codecs, self.owner, self.encoded_jpeg = tuple(codecs), owner, encoded_jpeg
        if self.manifest is not None and "codec" in self.manifest:  # early check: the codec of every shard
            self._check(str(self.manifest["codec"]), f"{self.shards[0].url}: ", "the manifest says every shard holds")

    def _check(self, codec: str, where: str, what: str) -> None:
        if codec in self.codecs:
            return
        held = ".rinr records" if codec == RECORD_MEMBER else f"{codec!r} images"
        if codec == RECORD_MEMBER:
            hint = "use RINRDataModule for .rinr shards"
        elif RECORD_MEMBER in self.codecs:
            hint = "use JPEGDataModule for jpeg/webp/avif shards"
        else:
            hint = "gpu_decode=True handles JPEG only: use gpu_decode=False"
        raise WrongCodecError(f"{where}{what} {held}, but {self.owner} reads {'/'.join(self.codecs)} shards; {hint}")

    def parse(self, sample: dict[str, Any]) -> ParsedSample:
        """Refuse members of another codec; with encoded_jpeg keep the JPEG bytes for the device decode."""
        codec, _ = image_member(sample)
        self._check(codec, f"{sample.get('__url__')} (sample {sample['__key__']!r}): ", "holds")
        return parse_sample(sample, keep_encoded=self.encoded_jpeg, classes=self.classes)


class ShardDataModule(L.LightningDataModule):
    """Train/val/test loaders over shard folders; the base of RINRDataModule and JPEGDataModule.

    Args:
        train: shard folder, manifest.json path or URL, brace pattern, or list of shard URLs.
        val, test: the same for validation and test (optional).
        batch_size: samples per batch.
        num_workers: CPU worker processes per loader (they read shards and unpack; decode is on the device).
        image_size: (H, W) every frame is letterboxed to; None keeps the frame size (all frames must agree).
        augment: True for AugmentConfig() on the training loader (never on val/test), an AugmentConfig, or False.
        device: where batches are decoded; "auto" takes the trainer's root device when a trainer is attached, else
            CUDA if available.
        seed: base seed of the shard/sample shuffles and of the augmentation.
        cache_dir: on-disk cache for remote (http) shards, each downloaded once.
        on_error: "raise", "warn" or "skip" a damaged sample or shard (a wrong codec always raises).
        cache: "device" to hold every sample's packed form on the decode device after its first epoch and serve
            later epochs from there, the same batches without shards or workers (docs/LOADING.md, "Device cache");
            each loader (train, val, test) has its own cache.
        cache_bytes: memory budget of each loader's cache; a share that does not fit disables it with a warning.
    """

    CODECS: tuple[str, ...] = ()

    def __init__(
        self,
        train: Any,
        val: Any = None,
        test: Any = None,
        batch_size: int = 8,
        num_workers: int = 2,
        image_size: tuple[int, int] | None = None,
        augment: bool | AugmentConfig = True,
        device: str | torch.device = "auto",
        seed: int = 0,
        cache_dir: str | None = None,
        on_error: str = "raise",
        cache: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        super().__init__()
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not isinstance(augment, (bool, AugmentConfig)):
            raise TypeError(f"augment must be a bool or an AugmentConfig, got {type(augment).__name__}")
        self.sources = {"train": train, "val": val, "test": test}
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.image_size = tuple(image_size) if image_size is not None else None
        self.augment = AugmentConfig() if augment is True else (augment or None)
        self.requested_device = device
        self.device: str | torch.device = device  # resolved from the trainer in setup() when "auto"
        self.cache_dir, self.on_error = cache_dir, on_error
        self.cache, self.cache_bytes = cache, cache_bytes
        self.rank: int | None = None  # from the trainer in setup(); None: torch.distributed / RANK
        self.world_size: int | None = None
        self._manifest: dict | None = None
        self._manifest_read = False

    # --- what the dataset is ---

    @property
    def classes(self) -> list[str] | None:
        """Class names from the manifest of the first split given (train, else val, else test); None without one."""
        if not self._manifest_read:
            source = next((s for s in self.sources.values() if s is not None), None)
            if source is not None:
                self._manifest = resolve_shards(source, FetchPolicy(cache_dir=self.cache_dir))[1]
            self._manifest_read = True
        return list(self._manifest["classes"]) if self._manifest else None

    # --- Lightning hooks ---

    def setup(self, stage: str | None = None) -> None:
        """Take rank, world size and (for device="auto") the device from the attached trainer."""
        trainer = self.trainer
        if trainer is None:
            return
        self.rank, self.world_size = trainer.global_rank, trainer.world_size
        auto = isinstance(self.requested_device, str) and self.requested_device == "auto"
        self.device = trainer.strategy.root_device if auto else self.requested_device

    def train_dataloader(self) -> RINRLoader:
        """Shuffled, augmented; equal batches per rank under DDP; resumable mid-epoch."""
        loader = self.loader("train", shuffle=True, augment=self.augment)
        uncounted = [s.url for s in loader.dataset.shards if s.samples is None]
        if self.trainer is not None and uncounted:
            rank_zero_warn(
                f"{type(self).__name__}: {len(uncounted)} train shard(s) ({uncounted[0]}, ...) have no "
                "sample count (remote or unreadable, and no manifest), so the loader has no length; "
                "Lightning then fetches one batch ahead and a mid-epoch resume skips that batch. Pass the "
                "dataset folder or its manifest.json for exact resume."
            )
        return loader

    def val_dataloader(self) -> RINRLoader:
        """In order, not augmented; equal batches per rank under DDP (a few tail samples are left out there)."""
        return self.loader("val", shuffle=False, augment=None)

    def test_dataloader(self) -> RINRLoader:
        """As val_dataloader, over the test split."""
        return self.loader("test", shuffle=False, augment=None)

    # --- building ---

    def dataset(self, split: str, shuffle: bool) -> CodecDataset:
        """The split's CodecDataset, split across this module's rank/world (equal batches when world > 1)."""
        source = self.sources[split]
        if source is None:
            raise ValueError(f"{type(self).__name__} was given no {split!r} shards")
        options = {"codecs": self.CODECS, "owner": type(self).__name__, **self._dataset_options()}
        ds = CodecDataset(
            source,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            on_error=self.on_error,
            device=self.device,
            rank=self.rank,
            world_size=self.world_size,
            cache_dir=self.cache_dir,
            **options,
        )
        if len(ds.shards) < ds.world_size:  # a rank without shards would set every rank's equal quota to 0
            raise ValueError(
                f"the {split!r} split has {len(ds.shards)} shards for {ds.world_size} ranks: every rank "
                "needs at least one (re-shard with a smaller --shard-size)"
            )
        return ds

    def loader(self, split: str, shuffle: bool, augment: AugmentConfig | None) -> RINRLoader:
        """A RINRLoader over the split, starting at the trainer's current epoch (reloads keep the shuffle)."""
        ds = self.dataset(split, shuffle)
        if self.trainer is not None:
            ds.set_epoch(self.trainer.current_epoch)
        return RINRLoader(
            ds,
            num_workers=self.num_workers,
            image_size=self.image_size,
            augment=augment,
            cache=self.cache,
            cache_bytes=self.cache_bytes,
        )

    def _dataset_options(self) -> dict[str, Any]:
        return {}


class RINRDataModule(ShardDataModule):
    """Shards of .rinr records, decoded in batches by the INR forward on the device. Arguments: ShardDataModule."""

    CODECS = RINR_CODECS


class JPEGDataModule(ShardDataModule):
    """Shards of JPEG/WebP/AVIF images (the baseline), decoded by Pillow in the CPU workers.

    Args:
        *args, **kwargs: as ShardDataModule.
        gpu_decode: decode JPEG with torchvision's nvJPEG `decode_jpeg(device="cuda")` in the main process instead
            (JPEG shards only; needs CUDA and a CUDA device).
    """

    CODECS = CLASSIC_CODECS

    def __init__(self, *args: Any, gpu_decode: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gpu_decode = gpu_decode
        if gpu_decode and not torch.cuda.is_available():
            raise ValueError(
                "gpu_decode=True decodes JPEG with nvJPEG on a CUDA device, but CUDA is not available; "
                "use gpu_decode=False (Pillow in the CPU workers)"
            )

    def dataset(self, split: str, shuffle: bool) -> CodecDataset:
        if self.gpu_decode and str(self.device) != "auto" and torch.device(self.device).type != "cuda":
            raise ValueError(f"gpu_decode=True needs a CUDA device, but this module decodes on {self.device}")
        return super().dataset(split, shuffle)

    def _dataset_options(self) -> dict[str, Any]:
        return {"codecs": ("jpeg",), "encoded_jpeg": True} if self.gpu_decode else {}
