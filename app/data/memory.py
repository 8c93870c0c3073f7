"""The memory guard: data_prep holds a downloaded set (MNIST, CIFAR-10, a resize of one) in memory
while it writes it, so it says how much and refuses before loading when it would not fit in half of
this machine's memory; an image folder is written a shard at a time and only told. Training holds
the split as float32 (4x) unless it streams it (train.py --stream); evaluation reads it in chunks."""
from __future__ import annotations

import math
import os
import sys

from app.errors import UserError


def machine_memory() -> int:
    """Physical memory in bytes (POSIX), or 0 when the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def mib(count: int) -> str:
    return f"{count / 2**20:,.1f} MiB"


def check_fits(images: int, shape: tuple[int, ...], refuse: bool = True) -> int:
    """Print what `images` uint8 images of `shape` (H, W[, C]) take; refuse over half of memory
    (unless not `refuse`: a set written shard by shard)."""
    needed = images * math.prod(shape)
    size = "x".join(map(str, shape))
    total = machine_memory()
    stream = " (more than half of memory: train with --stream, which reads them from the split's files)" \
        if total and needed * 4 > total // 2 else ""
    print(f"the images take {mib(needed)} in memory ({images} x {size} uint8; training holds them as "
          f"float32: {mib(needed * 4)}{stream})", file=sys.stderr)
    if refuse and total and needed > total // 2:
        raise UserError(
            f"{images} images of {size} take {mib(needed)}, more than half of this machine's memory "
            f"({mib(total)}). Make them smaller with --image-size (e.g. --image-size 64) or sample fewer "
            f"with --fraction (e.g. --fraction {max(1, int(100 * (total // 2) / needed))})."
        )
    return needed


def check_disk(needed: int, folder, what: str) -> None:
    """Refuse before writing when `needed` bytes (the split's files, which the store or W&B's
    cache then copies once more) would take more than half the free space where they go."""
    import shutil

    free = shutil.disk_usage(folder).free
    if needed > free // 2:
        raise UserError(
            f"{what} take {mib(needed)} on disk, written once for the artifact and copied once by W&B (or the "
            f"offline store): more than the {mib(free)} free in {folder} allows. Make them smaller with "
            f"--image-size (e.g. --image-size 64), sample fewer with --fraction, or free disk space "
            f"(TMPDIR sets where the split is written)."
        )


def check_training_fits(shapes: dict[str, tuple[int, ...]], device) -> None:
    """Training in memory holds the train and val splits as uint8 and, on the CPU, as float32
    (4x) too: refuse before loading when that passes half the memory, naming --stream."""
    images = sum(math.prod(shape) for shape in shapes.values())
    needed = images * (5 if device.type == "cpu" else 1)
    total = machine_memory()
    if total and needed > total // 2:
        raise UserError(
            f"the train and val splits take {mib(needed)} in memory to train on ({mib(images)} uint8"
            f"{' and 4x that as float32' if device.type == 'cpu' else ''}), more than half of this machine's "
            f"memory ({mib(total)}). Train with --stream: the split is then read from its files batch by batch."
        )
