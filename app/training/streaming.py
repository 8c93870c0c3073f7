"""A split streamed from its files instead of held in memory: for sets whose float copy does not
fit (train.py --stream).

The split's uint8 .npy files (one, or its shards) are read batch by batch by positioned reads
(app/data/shards.py) in DataLoader worker processes (the disk reads happen off the main process); each uint8 batch then goes to the device, where
app/inference.as_float converts and normalises it as the in-memory path does, and augmentation follows.
Converting in the workers instead was measured to grow each worker by a float batch per step
(12 MB at 64x64 colour: 1.1 GB after 80 steps; glibc keeps the freed blocks), and sends 4x
the bytes. Batches are the engine's own `order` chunks (its seeded shuffle, each rank's shard under
torchrun), so a streamed run sees the same batches with the same values as an in-memory one.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from app.data.loading import Batches, checked, worker_start
from app.data.shards import ImagesView
from app.errors import UserError
from app.inference import EVAL_BATCH, as_float
from app.recipe import InputSpec


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
    """A split streamed from its files (`images`) with `workers` DataLoader processes (0: in this
    one); the labels, small, are held on the device. The methods of engine.Tensors."""

    def __init__(self, images: ImagesView, labels: np.ndarray, device: torch.device, spec: InputSpec | None,
                 workers: int):
        if len(images) != len(labels):
            raise UserError(f"the split holds {len(images)} images for {len(labels)} labels; log the split again.")
        height, width = images.shape[1:3]
        self.sample_shape = [1 if images.ndim == 3 else images.shape[3], height, width]
        self.images, self.spec, self.workers = images, spec, workers
        self.device = torch.device(device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        self._sampler, self._loader = _Chunks(), None

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, order: torch.Tensor, batch_size: int):
        chunks = list(torch.split(order.cpu(), batch_size))
        if self._loader is None:  # workers started once and kept: starting them costs a short epoch's time
            self._loader = DataLoader(Batches(self.images), batch_size=None,
                                      sampler=self._sampler, num_workers=self.workers, persistent_workers=self.workers > 0,
                                      pin_memory=self.device.type == "cuda",
                                      # its own generator: a loader's start draws a seed, and from the
                                      # global RNG that draw would shift augmentation and dropout
                                      generator=torch.Generator().manual_seed(0),
                                      multiprocessing_context=worker_start(self.workers))
        self._sampler.chunks = chunks
        for index, images in zip(chunks, self._loader):
            yield as_float(checked(images).to(self.device, non_blocking=True), self.spec), self.labels[index.to(self.device)]

    def in_order(self, batch_size: int = EVAL_BATCH):
        for images, _ in self.batches(torch.arange(len(self)), batch_size):
            yield images
