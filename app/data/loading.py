"""A split's uint8 images read by DataLoader worker processes, in order or as the training's index
chunks: the disk reads (and, for a split of references, the decoding) happen off the main
process. Training's Stream (app/training/streaming.py), train's in-memory load and inference's
reading of a split (app/inference.py) all read through here."""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from app.data.shards import ImagesView
from app.errors import UserError

READ_BATCH = 1024  # images a worker reads at a time


class Batches(Dataset):
    """Item = one batch: the uint8 images at a tensor of indices, in that order, or in a slice."""

    def __init__(self, images: ImagesView):
        self.images = images  # pickled to workers as its file list; each opens (or decodes) the files itself

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor | str:
        try:
            return torch.from_numpy(self.images[index] if isinstance(index, slice) else self.images.take(index.numpy()))
        except UserError as err:  # sent back as data: raised here it would reach the main process wrapped
            return str(err)      # in the worker's traceback; checked() raises it there as it was


def checked(batch: torch.Tensor | str) -> torch.Tensor:
    """A batch from Batches, or the UserError a worker met (a file gone or changed while read)."""
    if isinstance(batch, str):
        raise UserError(batch)
    return batch


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
    loader = DataLoader(Batches(images), batch_size=None, sampler=ranges, num_workers=workers,
                        multiprocessing_context=worker_start(workers))
    for batch in loader:
        yield checked(batch).numpy()


def read_whole(images: ImagesView | np.ndarray, workers: int, batch_size: int = READ_BATCH) -> np.ndarray:
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
