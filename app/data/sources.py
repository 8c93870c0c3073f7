"""Raw image datasets: uint8 images (N, H, W) for greyscale or (N, H, W, 3) for colour, int64
labels, class names.

Greyscale sets keep their 3-d arrays (the channel axis of one is implicit), so a digits or
MNIST split is byte-identical to the one earlier versions logged: same digest, no new version.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app import names
from app.data import image_files, memory
from app.errors import UserError

DIGITS_SIZE = 28  # the 8x8 digits are upscaled to MNIST's size, so digits and MNIST models match
SOURCES = ("digits", "mnist", "fashion_mnist", "cifar10", "imagefolder")


@dataclass
class RawDataset:
    name: str
    images: np.ndarray  # uint8, (N, H, W) or (N, H, W, C)
    labels: np.ndarray  # int64, (N,)
    class_names: list[str]
    source: str  # where it came from, for the artifact's metadata
    skipped: list[dict] = field(default_factory=list)  # unreadable files, for the metadata
    resize: str | None = None  # how images were brought to one size (a RESIZE_RULES description), when they were
    light_on_dark: bool = False  # strokes on black (digits, MNIST): predict.py inverts light scans

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else int(self.images.shape[3])


def load_digits_28() -> RawDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), upscaled to 28x28."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    images = np.stack([
        np.asarray(Image.fromarray(img).resize((DIGITS_SIZE, DIGITS_SIZE), Image.BILINEAR)) for img in small
    ])
    return RawDataset(
        name="digits",
        images=images,
        labels=bunch.target.astype(np.int64),
        class_names=[str(c) for c in bunch.target_names],
        source="sklearn.datasets.load_digits (8x8, bilinear to 28x28)",
        light_on_dark=True,
    )


def load_torchvision(name: str, data_dir: Path, download: bool) -> RawDataset:
    """MNIST, Fashion-MNIST or CIFAR-10, train and test parts together (the split is ours to make)."""
    from torchvision import datasets  # imported here: 4 s, only when asked for

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    files = "cifar-10-batches-py/ (the extracted python version)" if name == "cifar10" else \
        f"{cls.__name__}/raw/*-ubyte (the unpacked IDX files)"
    try:
        parts = [cls(root=str(data_dir), train=train, download=download) for train in (True, False)]
    except (RuntimeError, OSError, ValueError) as err:
        raise UserError(
            f"could not load {name} from {data_dir} ({err}). Without network, pass --data-dir with "
            f"a folder holding {files}, or use the bundled set: --dataset digits."
            + ("" if download else " (--no-download was given: drop it to download.)")
        ) from err
    # MNIST keeps uint8 tensors, CIFAR-10 uint8 arrays (N, 32, 32, 3): both as numpy here
    images = np.concatenate([np.asarray(p.data) for p in parts]).astype(np.uint8)
    labels = np.concatenate([np.asarray(p.targets) for p in parts]).astype(np.int64)
    return RawDataset(name=name, images=images, labels=labels, class_names=list(parts[0].classes),
                      source=f"torchvision.datasets.{cls.__name__} (train + test)", light_on_dark=name != "cifar10")


def load_dataset(name: str, data_dir: Path, download: bool, image_size: tuple[int, int] | None = None,
                 strict: bool = False, dataset_name: str | None = None,
                 resize: str = image_files.DEFAULT_RESIZE) -> RawDataset:
    """The named source at `image_size` (H, W) when given (other sizes fitted by the `resize` rule),
    else at its own size; `dataset_name` names it (default: the source's name, or the image folder's)."""
    if name == "imagefolder":
        from app.data.imagefolder import load_image_folder

        folder = load_image_folder(Path(data_dir), image_size, strict, resize)
        return RawDataset(name=dataset_name or names.name_from_folder(Path(data_dir).resolve().name),
                          images=folder.images, labels=folder.labels, class_names=folder.class_names,
                          source=f"image folder {Path(data_dir).name}", skipped=folder.skipped,
                          resize=image_files.RESIZE_RULES[resize] if folder.resized else None)
    raw = load_digits_28() if name == "digits" else load_torchvision(name, data_dir, download)
    if dataset_name:
        raw.name = dataset_name
    if image_size is not None and tuple(raw.images.shape[1:3]) != tuple(image_size):
        raw = resized(raw, tuple(image_size), resize)
    return raw


def resized(raw: RawDataset, size: tuple[int, int], rule: str) -> RawDataset:
    """Every image fitted to `size` by `rule` (app/data/image_files.py)."""
    from app.progress import progress

    shape = size if raw.channels == 1 else (*size, raw.channels)
    memory.check_fits(len(raw.images), shape)
    out = np.empty((len(raw.images), *shape), dtype=np.uint8)
    for i, image in enumerate(progress(raw.images, len(raw.images), f"resizing to {size[0]}x{size[1]}", "images")):
        out[i] = image_files.fit_array(image, raw.channels, size, rule)
    raw.images, raw.resize = out, image_files.RESIZE_RULES[rule]
    return raw
