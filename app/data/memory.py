"""The memory guard: data_prep holds the split in memory while it writes it, so it says how much
and refuses before loading when it would not fit in half of this machine's memory. Training holds
it as float32 (4x) unless it streams it (train.py --stream); evaluation reads it by memory map."""
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


def check_fits(images: int, shape: tuple[int, ...]) -> int:
    """Print what `images` uint8 images of `shape` (H, W[, C]) take; refuse over half of memory."""
    needed = images * math.prod(shape)
    size = "x".join(map(str, shape))
    total = machine_memory()
    stream = " (more than half of memory: train with --stream, which reads them from the split's files)" \
        if total and needed * 4 > total // 2 else ""
    print(f"the images take {mib(needed)} in memory ({images} x {size} uint8; training holds them as "
          f"float32: {mib(needed * 4)}{stream})", file=sys.stderr)
    if total and needed > total // 2:
        raise UserError(
            f"{images} images of {size} take {mib(needed)}, more than half of this machine's memory "
            f"({mib(total)}). Make them smaller with --image-size (e.g. --image-size 64) or sample fewer "
            f"with --fraction (e.g. --fraction {max(1, int(100 * (total // 2) / needed))})."
        )
    return needed
