"""A split streamed from its files instead of held in memory: for sets whose float copy does not
fit (train.py --stream).

The split's uint8 .npy files (one, or its shards) are read batch by batch by positioned reads
(app/data/shards.py) in DataLoader worker processes (the disk reads happen off the main process); each uint8 batch then goes to the device, where
engine.as_float converts and normalises it as the in-memory path does, and augmentation follows.
Converting in the workers instead was measured to grow each worker by a float batch per step
(12 MB at 64x64 colour: 1.1 GB after 80 steps; glibc keeps the freed blocks), and sends 4x
the bytes. Batches are the engine's own `order` chunks (its seeded shuffle, each rank's shard under
torchrun), so a streamed run sees the same batches with the same values as an in-memory one.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from app.data.shards import ImagesView
from app.errors import UserError
from app.recipe import InputSpec
from app.training.engine import EVAL_BATCH, as_float


class _Batches(Dataset):
    """Item = one batch: the uint8 images at a tensor of indices, in that order, or in a slice."""

    def __init__(self, images: ImagesView):
        self.images = images  # pickled to workers as its file list; each opens (or decodes) the files itself

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor | str:
        try:
            return torch.from_numpy(self.images[index] if isinstance(index, slice) else self.images.take(index.numpy()))
        except UserError as err:  # sent back as data: raised here it would reach the main process wrapped
            return str(err)      # in the worker's traceback; checked() raises it there as it was


def checked(batch: torch.Tensor | str) -> torch.Tensor:
    """A batch from _Batches, or the UserError a worker met (a file gone or changed while read)."""
    if isinstance(batch, str):
        raise UserError(batch)
    return batch


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
            self._loader = DataLoader(_Batches(self.images), batch_size=None,
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


def read_whole(images: ImagesView | np.ndarray, workers: int, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """A split's images in memory as one uint8 array (train's in-memory path): a split of
    references, which decodes as it reads, decoded by `workers` DataLoader processes; a split's
    own files (one, or shards) read here, as fast as the disk gives them."""
    if not workers or not getattr(images, "decodes", False):
        return images[:]
    out = np.empty(images.shape, np.uint8)
    position = 0
    for batch in read_in_order(images, batch_size, workers):
        out[position:position + len(batch)] = batch
        position += len(batch)
    return out


def decode_workers() -> int:
    """Processes decoding a split of references into memory: every core this process may use (it
    only waits meanwhile), shared among torchrun's ranks on this machine, at most 8."""
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(8, (os.cpu_count() or 1) // max(1, local_ranks)))


def worker_start(workers: int) -> str | None:
    """How the DataLoader starts its workers: spawned (a fresh interpreter) under torchrun, forked
    otherwise (faster to start). A worker forked from a rank whose gloo threads were running hung
    in one of four torchrun runs: a fork copies the locks those threads held, never released."""
    if workers and torch.distributed.is_available() and torch.distributed.is_initialized():
        return "spawn"
    return None


def read_in_order(images: ImagesView, batch_size: int, workers: int):
    """The images in their order as uint8 arrays, `batch_size` at a time, read (and, for a split of
    references, decoded) by `workers` DataLoader processes: evaluation's reading of a split."""
    ranges = [slice(start, start + batch_size) for start in range(0, len(images), batch_size)]
    loader = DataLoader(_Batches(images), batch_size=None, sampler=ranges, num_workers=workers,
                        multiprocessing_context=worker_start(workers))
    for batch in loader:
        yield checked(batch).numpy()
