"""Files a person hands to predict.py, brought to the model's input as its training images were:
the recipe's size, channels and resizing rule (app/data/image_files.py)."""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from app.data import image_files
from app.errors import UserError, summary
from app.inference import to_model_input
from app.recipe import Recipe


def as_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 as it is; floats in [0, 1] (what ToTensor and most pipelines produce) scaled to
    0..255, other numbers clipped to it."""
    if np.issubdtype(array.dtype, np.floating) and array.size and 0.0 <= array.min() and array.max() <= 1.0:
        array = array * 255.0
    return np.clip(np.round(array) if np.issubdtype(array.dtype, np.floating) else array, 0, 255).astype(np.uint8)


def read_inputs(paths: list[str], skipped: list | None = None) -> list[tuple[str, np.ndarray]]:
    """(a name, a uint8 image (H, W) or (H, W, 3) as the file holds it) for every image file, every
    image of an .npy array, every such file in a folder (sorted, sub-folders included) and every
    file a quoted glob pattern matches. All of them are read before anything else happens, so a
    path that does not exist is refused before a run starts (a UserError that names it), and so
    is a file that cannot be read, unless a list `skipped` is given: then such a file is passed
    over and appended to it as (name, reason), as data_prep skips such files in a folder."""
    files, suffixes = [], image_files.image_extensions() | {".npy"}
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*"))
                     if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes]
            if not found:
                raise UserError(f"the folder {image_files.shown(text)} holds no image files or .npy arrays; pass "
                                "image files (PNG, JPEG, ...), .npy arrays, or a folder of them.")
            files += found
        elif path.is_file():
            files.append(path)
        elif any(c in text for c in "*?[") and (matched := sorted(glob.glob(text, recursive=True))):
            files += [Path(f) for f in matched if Path(f).is_file()]  # a quoted pattern: "photos/**/*.jpg"
        else:
            raise UserError(f"{image_files.shown(text)} does not exist; pass image files (PNG, JPEG, ...), .npy "
                            "arrays, or a folder of them.")
    inputs = []
    for path in files:
        name = image_files.shown(str(path))
        try:
            if path.suffix.lower() == ".npy":
                inputs += [(f"{name}[{i}]", image) for i, image in enumerate(_npy_images(path))]
                continue
            try:
                inputs.append((name, image_files.read_as_stored(path)))
            except (OSError, ValueError) as err:  # not an image, truncated, a decompression bomb
                raise UserError(f"{name} is not an image this can read ({summary(err)}); pass a PNG or JPEG (or "
                                "any format Pillow reads), or an .npy array.") from err
        except UserError as err:
            if skipped is None:
                raise
            skipped.append((name, str(err)))
    return inputs


def model_inputs(inputs: list[tuple[str, np.ndarray]], recipe: Recipe) -> tuple[list[str], np.ndarray]:
    """(the names, one uint8 batch as the model's training split stores its images)."""
    return [name for name, _ in inputs], np.stack([to_model_input(image, recipe.input) for _, image in inputs])


def load_inputs(paths: list[str], recipe: Recipe) -> tuple[list[str], np.ndarray]:
    """read_inputs, then model_inputs: files, arrays and folders -> the model's input batch."""
    return model_inputs(read_inputs(paths), recipe)


def _npy_images(path: Path) -> np.ndarray:
    """(N, H, W), (N, H, W, C), (H, W) or (H, W, C with C in 1, 3, 4) -> a uint8 batch."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # pickled, truncated, not an .npy at all
        raise UserError(f"{image_files.shown(str(path))} is not a plain .npy array of images ({summary(err)}).") from err
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4) and array.shape[0] > 4):
        array = array[None]
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3] not in (1, 3, 4)):
        raise UserError(f"{path} holds shape {array.shape}; expected (N, H, W), (N, H, W, C) or one image.")
    return as_uint8(array)
