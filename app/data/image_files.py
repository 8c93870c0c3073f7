"""Image files and arrays brought to one size and channel count: the resizing rules of data_prep
(image folders, --image-size) and predict.py (a person's files), one code for both, so a model
sees a new photo exactly as it saw its training images.

How an image of another size is brought to the set's one size is data_prep's `--resize`, one of
RESIZE_RULES, recorded by its description in the dataset's metadata and the model's recipe, so
predict.py and serve.py fit a person's files by the rule the model was trained with:
- trim (the default): the centre kept up to 4/3 times the size's aspect (4:3 for a square size: a
  long image loses less of its ends than crop cuts), scaled to fit inside, the rest black;
- crop: scaled to cover the size, aspect kept, the centre cropped (PIL.ImageOps.fit): no border and
  the most detail, but whatever lies outside the centre of a long image is cut off;
- pad: scaled to fit inside the size, aspect kept, the rest black (PIL.ImageOps.pad): nothing of
  the image is lost, at less detail for a long image;
- stretch: scaled to the size, aspect not kept.
Objects anywhere in long images lose to crop, textures that fill them lose detail to pad; trim
loses little to either (docs/performance.md, "How other sizes are fitted").
A recipe from before `--resize` records crop's description (or nothing: every image had the size),
and is fitted by crop, as it was.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

TRIM_ASPECT = 4 / 3  # trim: the most a kept centre's aspect exceeds the size's (measured: docs/performance.md)
# Rules that fill part of the size with black. Near-duplicate signatures are taken of a file's crop fit
# instead: the black bars an image of the same aspect shares with many others paired look-alikes (on
# 2,100 objects of 40-96 px at 64 px, 709 pairs at precision 0.14 with trim, 95 at 0.99 with crop).
BORDERED = ("trim", "pad")

RESIZE_RULES = {  # data_prep --resize: its name -> the description recorded
    "trim": "aspect kept: centre cropped to at most 4/3 times the size's aspect, scaled to fit inside the size "
            "(bilinear, antialiased), the rest black",
    "crop": "aspect kept: scaled to cover the size (bilinear, antialiased), centre cropped",
    "pad": "aspect kept: scaled to fit inside the size (bilinear, antialiased), the rest black",
    "stretch": "scaled to the size (bilinear, antialiased), aspect not kept",
}
DEFAULT_RESIZE = "trim"  # measured against crop and pad: docs/performance.md, "How other sizes are fitted"
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


def read_image(path: Path, channels: int, size: tuple[int, int] | None, rule: str = "crop") -> np.ndarray:
    """The file decoded as uint8 (H, W) for one channel or (H, W, 3), upright as its EXIF
    orientation says, fitted to `size` (H, W) when given by `rule`. A truncated or corrupt file
    raises OSError/ValueError."""
    return read_fits(path, channels, size, (rule,))[0]


def read_fits(path: Path, channels: int, size: tuple[int, int] | None, rules: tuple[str, ...]) -> list[np.ndarray]:
    """The file decoded once (as read_image), fitted by each of `rules`."""
    with open_image(path) as image:
        image.load()  # decode now: a truncated file fails here, not later
        return [fit_image(image, channels, size, rule) for rule in rules]


def read_as_stored(source) -> np.ndarray:
    """A file (path or file object) decoded once, upright, as uint8 (H, W) when its mode has no
    colour, else (H, W, 3), at its own size: what predict.py and serve.py take in before the
    model's recipe brings it to the model's input."""
    with open_image(source) as image:
        image.load()
        return fit_image(image, channels_of_mode(image.mode), None)


def crop_cut(size_hw: tuple[int, int], target_hw: tuple[int, int]) -> float:
    """The share of an image of `size_hw` that crop cuts off to fit `target_hw` (0: the same shape)."""
    (h, w), (height, width) = size_hw, target_hw
    image_aspect, target_aspect = w / h, width / height
    return 1 - min(image_aspect, target_aspect) / max(image_aspect, target_aspect)


def resize_rule(recorded: str | None) -> str:
    """The rule's name for what a dataset or recipe recorded (a description of RESIZE_RULES, or a
    name); nothing recorded (every image had the size, or a recipe from before --resize): crop, the
    rule there was."""
    named = {description: name for name, description in RESIZE_RULES.items()}
    return recorded if recorded in RESIZE_RULES else named.get(recorded, "crop")


def fit_image(image, channels: int, size: tuple[int, int] | None, rule: str = "crop") -> np.ndarray:
    """A PIL image made upright (EXIF orientation, as phones record it), converted to
    `channels` (1: greyscale, 3: RGB) and fitted to `size` by `rule` (a name of RESIZE_RULES; data_prep,
    predict and serve pass the one recorded, the benchmarks' own fits take crop)."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_GREY_MODES:
        image = Image.fromarray(to_8_bits(np.asarray(image)))
    if image.mode == "P":  # palette images may carry transparency: resolve it before RGB/L
        image = image.convert("RGBA")
    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and (image.height, image.width) != tuple(size):
        target = (size[1], size[0])  # PIL's (width, height)
        if rule in BORDERED:  # trim: pad what is left once a long image's ends are cut
            kept = centre_within(image, target, TRIM_ASPECT) if rule == "trim" else image
            image = ImageOps.pad(kept, target, method=Image.BILINEAR, color=0, centering=(0.5, 0.5))
        elif rule == "stretch":
            image = image.resize(target, Image.BILINEAR)
        else:
            image = ImageOps.fit(image, target, method=Image.BILINEAR, centering=(0.5, 0.5))
    return np.asarray(image, dtype=np.uint8)


def centre_within(image, target: tuple[int, int], most: float):
    """The centre of a PIL image whose aspect is at most `most` times the target's (W, H), either
    way: a longer image loses its ends, one within that is returned as it is."""
    aspect, wanted = image.width / image.height, target[0] / target[1]
    if aspect > wanted * most:  # too wide: keep the centre columns
        width = max(1, round(image.height * wanted * most))
        left = (image.width - width) // 2
        return image.crop((left, 0, left + width, image.height))
    if aspect < wanted / most:  # too tall: keep the centre rows
        height = max(1, round(image.width * most / wanted))
        top = (image.height - height) // 2
        return image.crop((0, top, image.width, top + height))
    return image


def to_8_bits(pixels: np.ndarray) -> np.ndarray:
    """16-bit greyscale (0..65535) scaled to uint8 (65535 -> 255). Pillow's 32-bit "I" mode
    holds 16-bit files too; one whose values all fit in 8 bits is kept as it is."""
    if pixels.dtype != np.uint16 and pixels.size and pixels.max() <= 255:
        return np.clip(pixels, 0, 255).astype(np.uint8)
    return np.clip(np.round(pixels / 257.0), 0, 255).astype(np.uint8)


def fit_array(image: np.ndarray, channels: int, size: tuple[int, int] | None, rule: str = "crop") -> np.ndarray:
    """The same for a uint8 array (H, W) or (H, W, C)."""
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return fit_image(Image.fromarray(image), channels, size, rule)
