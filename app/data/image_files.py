"""Image files and arrays brought to one size and channel count: the one resizing rule of
data_prep (image folders, --image-size) and predict.py (a person's files), so a model sees a
new photo exactly as it saw its training images.

Resizing keeps the aspect ratio: the image is scaled to cover the target size, then the
centre is cropped (PIL.ImageOps.fit). Nothing is padded, so no border the model never saw.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

RESIZE_RULE = "aspect kept: scaled to cover the size (bilinear, antialiased), centre cropped"
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}  # Pillow modes without colour


def channels_of_mode(mode: str) -> int:
    return 1 if mode in GREY_MODES else 3


def image_extensions() -> set[str]:
    """Every extension Pillow can open, lower case with the dot."""
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def read_header(path: Path) -> tuple[tuple[int, int], str]:
    """((height, width), Pillow mode) from the file's header, without decoding the pixels.
    Raises OSError/ValueError (PIL.UnidentifiedImageError is an OSError) for a non-image."""
    from PIL import Image

    with Image.open(path) as image:
        return (image.height, image.width), image.mode


def read_image(path: Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """The file decoded as uint8 (H, W) for one channel or (H, W, 3), fitted to `size` (H, W)
    when given. A truncated or corrupt file raises OSError/ValueError."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # decode now: a truncated file fails here, not later
        return fit_image(image, channels, size)


def fit_image(image, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """A PIL image converted to `channels` (1: greyscale, 3: RGB) and fitted to `size`."""
    from PIL import Image, ImageOps

    if image.mode == "P":  # palette images may carry transparency: resolve it before RGB/L
        image = image.convert("RGBA")
    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and (image.height, image.width) != tuple(size):
        image = ImageOps.fit(image, (size[1], size[0]), method=Image.BILINEAR, centering=(0.5, 0.5))
    return np.asarray(image, dtype=np.uint8)


def fit_array(image: np.ndarray, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """The same rule for a uint8 array (H, W) or (H, W, C)."""
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return fit_image(Image.fromarray(image), channels, size)
