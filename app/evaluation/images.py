"""Files a person hands to predict.py, brought to the model's input as its training images were:
the recipe's size, channels and resizing rule (app/data/image_files.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app.data import image_files
from app.data.preprocessing import of_recipe
from app.errors import UserError


def as_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 as it is; floats in [0, 1] (what ToTensor and most pipelines produce) scaled to
    0..255, other numbers clipped to it."""
    if np.issubdtype(array.dtype, np.floating) and array.size and 0.0 <= array.min() and array.max() <= 1.0:
        array = array * 255.0
    return np.clip(np.round(array) if np.issubdtype(array.dtype, np.floating) else array, 0, 255).astype(np.uint8)


def to_model_input(image: np.ndarray, seen: dict) -> np.ndarray:
    """A uint8 image of any size (H, W) or (H, W, C) -> the model's size and channels. For
    digit-like models (light strokes on dark), a light background is inverted, as on a scan."""
    fitted = image_files.fit_array(image, int(seen["channels"]), tuple(seen["size"]))
    if seen.get("invert_light_background") and fitted.mean() > 127:
        return 255 - fitted
    return fitted


def load_inputs(paths: list[str], recipe: dict) -> tuple[list[str], np.ndarray]:
    """(a name per image, uint8 images as the model's training split stores them) from image
    files and .npy arrays."""
    from PIL import Image

    seen = of_recipe(recipe)
    names, images = [], []
    for text in paths:
        path = Path(text)
        if not path.is_file():
            raise UserError(f"{path} does not exist; pass image files (PNG, JPEG, ...) or .npy arrays.")
        if path.suffix.lower() == ".npy":
            for i, image in enumerate(_npy_images(path)):
                names.append(f"{path}[{i}]")
                images.append(to_model_input(image, seen))
            continue
        try:
            with Image.open(path) as opened:
                opened.load()
                image = image_files.fit_image(opened, int(seen["channels"]), None)
        except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
            raise UserError(f"{path} is not an image Pillow can read ({err.__class__.__name__}); "
                            "pass a PNG or JPEG (or any format Pillow reads), or an .npy array.") from err
        names.append(str(path))
        images.append(to_model_input(image, seen))
    return names, np.stack(images)


def _npy_images(path: Path) -> np.ndarray:
    """(N, H, W), (N, H, W, C), (H, W) or (H, W, C with C in 1, 3, 4) -> a uint8 batch."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise UserError(f"{path} is not a plain .npy array of images ({err}).") from err
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4) and array.shape[0] > 4):
        array = array[None]
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3] not in (1, 3, 4)):
        raise UserError(f"{path} holds shape {array.shape}; expected (N, H, W), (N, H, W, C) or one image.")
    return as_uint8(array)
