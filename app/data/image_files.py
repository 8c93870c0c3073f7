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
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # Pillow modes without colour
# Greyscale with more than 8 bits (16-bit PNG and TIFF): Pillow's convert("L") clips these at
# 255, so a 16-bit scan would load nearly white; they are scaled to 8 bits instead.
WIDE_GREY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
ORIENTATION_TAG = 0x0112  # EXIF's Orientation (PIL.ExifTags.Base.Orientation)
# EXIF orientations that turn the picture a quarter (the stored width is the shown height).
QUARTER_TURNS = {5, 6, 7, 8}


class UnreadableImage(ValueError):
    """A file that must not be decoded: a decompression bomb (more pixels than Pillow allows).
    A ValueError, so every caller's skip of unreadable files (OSError, ValueError) covers it."""


def shown(name: str) -> str:
    """A file or folder name as text every later step can draw, print and store: bytes that
    are not UTF-8 (the surrogates os.fsdecode leaves) written as \\xNN, so names stay distinct."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def channels_of_mode(mode: str) -> int:
    return 1 if mode in GREY_MODES else 3


def image_extensions() -> set[str]:
    """Every extension Pillow can open, lower case with the dot."""
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def open_image(path: Path):
    """Pillow's Image.open, with a decompression bomb (Pillow's DecompressionBombError, which
    is neither an OSError nor a ValueError) raised as UnreadableImage before any pixel is decoded."""
    from PIL import Image

    try:
        return Image.open(path)
    except Image.DecompressionBombError as err:
        raise UnreadableImage(f"decompression bomb refused ({err})") from err


def read_header(path: Path) -> tuple[tuple[int, int], str]:
    """((height, width) as the picture is shown, Pillow mode) from the file's header, without
    decoding the pixels: a photo whose EXIF says "turned a quarter" reports its turned size.
    Raises OSError/ValueError (PIL.UnidentifiedImageError is an OSError) for a non-image."""
    with open_image(path) as image:
        turned = image.getexif().get(ORIENTATION_TAG) in QUARTER_TURNS
        return ((image.width, image.height) if turned else (image.height, image.width)), image.mode


def read_image(path: Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """The file decoded as uint8 (H, W) for one channel or (H, W, 3), upright as its EXIF
    orientation says, fitted to `size` (H, W) when given. A truncated or corrupt file raises
    OSError/ValueError."""
    with open_image(path) as image:
        image.load()  # decode now: a truncated file fails here, not later
        return fit_image(image, channels, size)


def read_as_stored(source) -> np.ndarray:
    """A file (path or file object) decoded once, upright, as uint8 (H, W) when its mode has no
    colour, else (H, W, 3), at its own size: what predict.py and serve.py take in before the
    model's recipe brings it to the model's input."""
    with open_image(source) as image:
        image.load()
        return fit_image(image, channels_of_mode(image.mode), None)


def fit_image(image, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """A PIL image made upright (EXIF orientation, as phones record it), converted to
    `channels` (1: greyscale, 3: RGB) and fitted to `size`."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_GREY_MODES:
        image = Image.fromarray(to_8_bits(np.asarray(image)))
    if image.mode == "P":  # palette images may carry transparency: resolve it before RGB/L
        image = image.convert("RGBA")
    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and (image.height, image.width) != tuple(size):
        image = ImageOps.fit(image, (size[1], size[0]), method=Image.BILINEAR, centering=(0.5, 0.5))
    return np.asarray(image, dtype=np.uint8)


def to_8_bits(pixels: np.ndarray) -> np.ndarray:
    """16-bit greyscale (0..65535) scaled to uint8 (65535 -> 255). Pillow's 32-bit "I" mode
    holds 16-bit files too; one whose values all fit in 8 bits is kept as it is."""
    if pixels.dtype != np.uint16 and pixels.size and pixels.max() <= 255:
        return np.clip(pixels, 0, 255).astype(np.uint8)
    return np.clip(np.round(pixels / 257.0), 0, 255).astype(np.uint8)


def fit_array(image: np.ndarray, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """The same rule for a uint8 array (H, W) or (H, W, C)."""
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return fit_image(Image.fromarray(image), channels, size)
