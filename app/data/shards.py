"""A split's images as one array over one or more .npy files: what evaluation, training with
--stream and the error-analysis tables read when a split may be larger than memory.

Rows are read with positioned reads (os.pread), not a memory map: a map keeps every page it has
touched resident and counted in the process's RSS until it is closed, so one epoch over a 2.4 GB
split would leave each reader holding 2.4 GB. A read copies exactly the rows asked for.

The view pickles as its file list (the descriptors are opened again in each process), so a
DataLoader worker receives it without the data.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from app.errors import UserError


def damaged(path: Path, why: str) -> UserError:
    return UserError(f"{path.name} of the dataset split {why}; log the split again (data_prep.py), or, when the "
                     "artifact came from W&B, delete it from the artifacts cache so it is downloaded again.")


def read_header(path: Path) -> tuple[tuple[int, ...], int]:
    """(shape, offset of the first byte of data) of a uint8 .npy image file; anything else is named."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as err:
        raise damaged(path, f"cannot be read ({err})") from err
    if dtype != np.uint8 or fortran or len(shape) not in (3, 4):
        raise damaged(path, f"holds {dtype} {shape}, not uint8 images")
    expected = offset + int(np.prod(shape))
    size = path.stat().st_size
    if size != expected:
        raise damaged(path, f"is {size:,} bytes where its header says {expected:,} (truncated or damaged)")
    return tuple(int(n) for n in shape), offset


class ImagesView:
    """uint8 images (N, H, W) or (N, H, W, C) indexed like one numpy array: len, shape, dtype,
    ndim, an int, a slice or an array of indices (rows come back in the order asked). Subclasses
    give `sample_shape`, `__len__`, `rows(start, stop)` and `take(index)`."""

    dtype = np.dtype(np.uint8)
    sample_shape: tuple[int, ...]
    decodes = False  # whether reading decodes images (then a pool of processes reads faster)

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.sample_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    def __array__(self, dtype=None, copy=None):
        images = self[:]
        return images if dtype is None else images.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            index = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= index < len(self):
                raise IndexError(f"index {key} is out of range for {len(self)} images")
            return self.rows(index, index + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self.rows(start, max(start, stop))
            key = np.arange(start, stop, step)
        key = np.asarray(key)
        return self.take(np.flatnonzero(key) if key.dtype == bool else key)

    def check_index(self, index) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} images")
        return index


class ShardedImages(ImagesView):
    """The images stored in `files` (.npy), in that order. Every file's header and size are
    checked when the view is made."""

    def __init__(self, files: list[Path]):
        if not files:
            raise UserError("a dataset split lists no image files; log the split again.")
        self.files = [Path(f) for f in files]
        headers = [read_header(f) for f in self.files]
        self.sample_shape = headers[0][0][1:]
        for f, (shape, _) in zip(self.files, headers):
            if shape[1:] != self.sample_shape:
                raise damaged(f, f"holds images of {shape[1:]}, the split's first file {self.sample_shape}")
        self.offsets = [offset for _, offset in headers]
        self.starts = np.cumsum([0] + [shape[0] for shape, _ in headers])  # first row of each file
        self.row_bytes = int(np.prod(self.sample_shape))
        self._fds: list[int] | None = None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fds": None}  # descriptors are this process's own

    def __del__(self):
        for fd in getattr(self, "_fds", None) or ():  # (None when __init__ refused the files)
            os.close(fd)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Images start..stop-1: one read per file they span."""
        out = np.empty((stop - start, *self.sample_shape), np.uint8)
        for k in range(len(self.files)):
            lo, hi = max(start, int(self.starts[k])), min(stop, int(self.starts[k + 1]))
            if lo < hi:
                self._read(k, lo - int(self.starts[k]), out[lo - start:hi - start])
        return out

    def take(self, index: np.ndarray) -> np.ndarray:
        """The images at `index` (any order, repeats allowed), one read per image."""
        index = self.check_index(index)
        out = np.empty((len(index), *self.sample_shape), np.uint8)
        shard = np.searchsorted(self.starts, index, side="right") - 1
        for i, (k, row) in enumerate(zip(shard.tolist(), (index - self.starts[shard]).tolist())):
            self._read(k, row, out[i:i + 1])
        return out

    def _read(self, k: int, row: int, out: np.ndarray) -> None:
        if self._fds is None:
            self._fds = [os.open(f, os.O_RDONLY) for f in self.files]
        buffer = memoryview(out).cast("B")
        position, done = self.offsets[k] + row * self.row_bytes, 0
        while done < len(buffer):  # pread may return less than asked (signals, large reads)
            count = os.preadv(self._fds[k], [buffer[done:]], position + done)
            if count == 0:
                raise damaged(self.files[k], "ended early (truncated while in use)")
            done += count
