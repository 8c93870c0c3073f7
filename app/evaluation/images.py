"""Files a person hands to predict.py, as uint8 arrays of the model's input size."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app.errors import UserError


def to_model_input(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Any-size grayscale uint8 -> the model's size; light backgrounds inverted to dark."""
    from PIL import Image

    if gray.shape != tuple(size):
        gray = np.asarray(Image.fromarray(gray).resize((size[1], size[0]), Image.BILINEAR))
    # The training sets have light strokes on a dark background; a scan has the opposite.
    return 255 - gray if gray.mean() > 127 else gray


def as_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 as it is; floats in [0, 1] (what ToTensor and most pipelines produce) scaled to
    0..255, other numbers clipped to it."""
    if np.issubdtype(array.dtype, np.floating) and array.size and 0.0 <= array.min() and array.max() <= 1.0:
        array = array * 255.0
    return np.clip(np.round(array) if np.issubdtype(array.dtype, np.floating) else array, 0, 255).astype(np.uint8)


def load_inputs(paths: list[str], size) -> tuple[list[str], np.ndarray]:
    """(a name per image, uint8 images (N, H, W)) from image files and .npy arrays."""
    from PIL import Image, UnidentifiedImageError

    size = tuple(size)
    names, images = [], []
    for text in paths:
        path = Path(text)
        if not path.is_file():
            raise UserError(f"{path} does not exist; pass PNG/JPEG files or .npy arrays.")
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except ValueError as err:
                raise UserError(f"{path} is not a plain .npy array of images ({err}).") from err
            array = array[None] if array.ndim == 2 else array
            if array.ndim != 3:
                raise UserError(f"{path} holds shape {array.shape}; expected (N, H, W) or (H, W) grayscale images.")
            array = as_uint8(array)
            for i, image in enumerate(array):
                names.append(f"{path}[{i}]")
                images.append(to_model_input(image, size))
            continue
        try:
            with Image.open(path) as opened:
                gray = np.asarray(opened.convert("L"))
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"{path} is not an image PIL can read ({err.__class__.__name__}); "
                            "pass a PNG or JPEG, or an .npy array.") from err
        names.append(str(path))
        images.append(to_model_input(gray, size))
    return names, np.stack(images)
