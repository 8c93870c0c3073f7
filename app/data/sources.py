"""Raw image datasets as (uint8 images N x H x W, int64 labels N, class names)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.errors import UserError

IMAGE_SIZE = 28  # every dataset is delivered at MNIST's size, so every model fits every dataset


@dataclass
class RawDataset:
    name: str
    images: np.ndarray  # uint8, (N, 28, 28)
    labels: np.ndarray  # int64, (N,)
    class_names: list[str]
    source: str  # where it came from, for the artifact's metadata


def load_digits_28() -> RawDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), upscaled to 28x28."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    images = np.stack([
        np.asarray(Image.fromarray(img).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)) for img in small
    ])
    return RawDataset(
        name="digits",
        images=images,
        labels=bunch.target.astype(np.int64),
        class_names=[str(c) for c in bunch.target_names],
        source="sklearn.datasets.load_digits (8x8, bilinear to 28x28)",
    )


def load_torchvision(name: str, data_dir: Path, download: bool) -> RawDataset:
    """MNIST or Fashion-MNIST, train and test parts together (the split is ours to make)."""
    from torchvision import datasets  # imported here: 4 s, only when asked for

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]
    try:
        parts = [cls(root=str(data_dir), train=train, download=download) for train in (True, False)]
    except (RuntimeError, OSError) as err:
        raise UserError(
            f"could not load {name} from {data_dir} ({err}). Without network, pass --data-dir with "
            f"a folder holding {cls.__name__}/raw/*-ubyte (the unpacked IDX files), or use the bundled set: "
            f"--dataset digits." + ("" if download else " (--no-download was given: drop it to download.)")
        ) from err
    return RawDataset(
        name=name,
        images=np.concatenate([p.data.numpy() for p in parts]).astype(np.uint8),
        labels=np.concatenate([p.targets.numpy() for p in parts]).astype(np.int64),
        class_names=list(parts[0].classes),
        source=f"torchvision.datasets.{cls.__name__} (train + test)",
    )


def load_dataset(name: str, data_dir: Path, download: bool) -> RawDataset:
    if name == "digits":
        return load_digits_28()
    return load_torchvision(name, data_dir, download)
