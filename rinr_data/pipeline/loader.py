"""RINRLoader: serve a RINRDataset through a StatefulDataLoader and decode each batch on the device.

Why a loader wrapper rather than Lightning's on_after_batch_transfer hook: it works in any training loop, it
keeps CUDA out of the worker processes by construction (workers only unpack and stack weights), and it owns
the resumable state (epoch + StatefulDataLoader state) that Lightning checkpoints through state_dict().
"""

from __future__ import annotations

import contextlib
import os
import zlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision import tv_tensors

from ..core.devices import resolve_device
from ..decode import decode_packed
from ..errors import FormatError
from .augment import PAD_VALUE, AugmentConfig, augment_batch, build_transform
from .dataset import LoaderBatch, RINRDataset


def _no_cuda_in_workers(_: int) -> None:
    """Worker init: make any CUDA initialisation in a DataLoader worker fail loudly instead of forking a context."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("CUDA must not be initialised in a DataLoader worker: decode runs in the main process")

    torch.cuda._lazy_init = refuse  # type: ignore[assignment]
    torch.cuda.init = refuse  # type: ignore[assignment]


@contextlib.contextmanager
def _cpu_threads(limit: int) -> Iterator[None]:
    """Cap torch's intra-op threads for a block, then restore them."""
    before = torch.get_num_threads()
    if limit >= before:
        yield
        return
    torch.set_num_threads(limit)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def letterbox(image: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize [3, h, w] to fit `size` (H, W) keeping its aspect ratio, pad right/bottom; scale boxes alike."""
    h, w = image.shape[-2:]
    if (h, w) == tuple(size):
        return image, boxes
    scale = min(size[0] / h, size[1] / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(image[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    canvas = torch.full((image.shape[0], *size), PAD_VALUE, dtype=image.dtype, device=image.device)
    canvas[:, :nh, :nw] = resized.clamp(0, 1)
    scaled = boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h], dtype=boxes.dtype, device=boxes.device)
    return canvas, scaled


class RINRLoader:
    """Iterate a RINRDataset with worker processes; yield {"images", "targets", "keys"} decoded on `device`.

    Args:
        dataset: the RINRDataset (its batch_size sets the batch size).
        num_workers: CPU worker processes that read shards and unpack records (0: in the main process).
        image_size: (H, W) every image is letterboxed to; None keeps the frame size (all frames must agree).
        augment: an AugmentConfig for device-side augmentation, or None.
        device: where to decode; default the dataset's.
        pin_memory: pin worker output for asynchronous copies (default: when decoding on CUDA).
    """

    def __init__(
        self,
        dataset: RINRDataset,
        num_workers: int = 0,
        image_size: tuple[int, int] | None = None,
        augment: AugmentConfig | None = None,
        device: str | torch.device | None = None,
        pin_memory: bool | None = None,
        prefetch_factor: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.device = resolve_device(device if device is not None else dataset.device)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.augment = augment
        self.num_workers = num_workers
        pin = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.loader = StatefulDataLoader(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            pin_memory=pin,
            worker_init_fn=_no_cuda_in_workers if num_workers else None,
            prefetch_factor=prefetch_factor if num_workers else None,
        )
        self.epoch = dataset.epoch
        self._started = False
        self._restored = False

    def __len__(self) -> int:
        n = self.dataset.batches_per_epoch(self.num_workers)
        if n is None:
            raise TypeError("batches per epoch are unknown: some shards have no sample count (remote, no manifest)")
        return n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._started and not self._restored:
            self.epoch += 1
        self._started, self._restored = True, False
        self.dataset.set_epoch(self.epoch)
        for batch in self.loader:
            yield self.finish(batch)

    def state_dict(self) -> dict[str, Any]:
        """Epoch and the StatefulDataLoader's state (every worker's position)."""
        return {"epoch": self.epoch, "loader": self.loader.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration continues the saved epoch after its last delivered batch."""
        self.epoch = int(state["epoch"])
        self.dataset.set_epoch(self.epoch)
        self.loader.load_state_dict(state["loader"])
        self._started, self._restored = True, True

    def finish(self, batch: LoaderBatch) -> dict[str, Any]:
        """Decode on the device, letterbox, augment and build the training batch."""
        dev = self.device
        # A CPU decode shares the cores with the workers: OpenMP threads spinning on busy cores made it
        # 4-20x slower (docs/BENCHMARKS.md), so leave one core per worker.
        limit = max(1, (os.cpu_count() or 1) - self.num_workers) if dev.type == "cpu" else 1 << 16
        try:
            with _cpu_threads(limit):
                images = decode_packed(batch.packed, dev, as_float=True)
        except FormatError as exc:
            raise FormatError(f"batch of samples {list(batch.keys)}: {exc}") from exc
        boxes = [b.to(dev, non_blocking=True) for b in batch.boxes]
        labels = [lab.to(dev, non_blocking=True) for lab in batch.labels]
        size = self.image_size
        if size is None:
            sizes = {tuple(i.shape[-2:]) for i in images}
            if len(sizes) > 1:
                raise ValueError(f"frames of sizes {sorted(sizes)} in one batch: set image_size to letterbox them")
            size = sizes.pop()
        pairs = [letterbox(img, b, size) for img, b in zip(images, boxes)]
        stacked = torch.stack([p[0] for p in pairs])
        boxes = [p[1] for p in pairs]
        if self.augment is not None:
            seed = zlib.crc32(f"{self.dataset.seed}/{batch.epoch}/{batch.worker}/{batch.index}".encode())
            stacked, boxes, labels = augment_batch(stacked, boxes, labels, build_transform(self.augment, size), seed)
        targets = [
            {
                "boxes": tv_tensors.BoundingBoxes(b.reshape(-1, 4).to(torch.float32), format="XYXY", canvas_size=size),
                "labels": lab.to(torch.int64),
            }
            for b, lab in zip(boxes, labels)
        ]
        return {"images": stacked, "targets": targets, "keys": list(batch.keys)}
