"""A split streamed from its files instead of held in memory: for sets whose float copy does not
fit (train.py --stream).

The split's uint8 .npy file is read by memory map, batch by batch, in DataLoader worker processes
(the disk reads happen off the main process); each uint8 batch then goes to the device, where
engine.as_float converts and normalises it as the in-memory path does, and augmentation follows.
Converting in the workers instead was measured to grow each worker by a float batch per step
(12 MB at 64x64 colour: 1.1 GB after 80 steps; glibc keeps the freed blocks), and sends 4x
the bytes. Batches are the engine's own `order` chunks (its seeded shuffle, each rank's shard under
torchrun), so a streamed run sees the same batches with the same values as an in-memory one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from app.errors import UserError
from app.training.engine import EVAL_BATCH, as_float


class _MappedBatches(Dataset):
    """Item = one batch: the uint8 images at a tensor of indices, in that order."""

    def __init__(self, images_file: Path):
        self.images_file = images_file
        self._images = None  # opened in each process on first use (a memory map is not sent to workers)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        if self._images is None:
            self._images = open_images(self.images_file)
        return torch.from_numpy(self._images[index.numpy()])  # fancy indexing: a copy, in the order given


def open_images(path: Path) -> np.ndarray:
    """The split's uint8 images by memory map; a missing or damaged file is named."""
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise UserError(f"{path.name} of the dataset split cannot be read ({err}); log the split again.") from err
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise UserError(f"{path.name} of the dataset split holds {images.dtype} {images.shape}, not uint8 images; "
                        "log the split again.")
    return images


class _Chunks:
    """The DataLoader's sampler: this pass's index chunks, replaced before each pass, so one
    loader (and its worker processes) serves every epoch."""

    def __init__(self):
        self.chunks: list[torch.Tensor] = []

    def __iter__(self):
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


class Stream:
    """A split streamed from `images_file` with `workers` DataLoader processes (0: in this one);
    the labels, small, are held on the device. The methods of engine.Tensors."""

    def __init__(self, images_file: Path, labels: np.ndarray, device: torch.device, preprocessing: dict | None,
                 workers: int):
        images = open_images(images_file)
        if len(images) != len(labels):
            raise UserError(f"{images_file.name} holds {len(images)} images for {len(labels)} labels; "
                            "log the split again.")
        height, width = images.shape[1:3]
        self.sample_shape = [1 if images.ndim == 3 else images.shape[3], height, width]
        self.images_file, self.preprocessing, self.workers = images_file, preprocessing, workers
        self.device = torch.device(device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        self._sampler, self._loader = _Chunks(), None

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, order: torch.Tensor, batch_size: int):
        chunks = list(torch.split(order.cpu(), batch_size))
        if self._loader is None:  # workers started once and kept: starting them costs a short epoch's time
            self._loader = DataLoader(_MappedBatches(self.images_file), batch_size=None,
                                      sampler=self._sampler, num_workers=self.workers, persistent_workers=self.workers > 0,
                                      pin_memory=self.device.type == "cuda",
                                      # its own generator: a loader's start draws a seed, and from the
                                      # global RNG that draw would shift augmentation and dropout
                                      generator=torch.Generator().manual_seed(0))
        self._sampler.chunks = chunks
        for index, images in zip(chunks, self._loader):
            yield as_float(images.to(self.device, non_blocking=True), self.preprocessing), self.labels[index.to(self.device)]

    def in_order(self, batch_size: int = EVAL_BATCH):
        for images, _ in self.batches(torch.arange(len(self)), batch_size):
            yield images
