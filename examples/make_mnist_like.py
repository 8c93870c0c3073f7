"""Write an MNIST-shaped data set in MNIST's own files: 28x28 greyscale handwritten digits, white
on black, 60,000 training and 10,000 test images as IDX files where torchvision looks for them.

    python examples/make_mnist_like.py data                      # data/MNIST/raw/*-ubyte
    python app/pipelines/data_prep.py --dataset mnist --data-dir data --no-download

A stand-in for MNIST on machines that cannot download it (this project's CI and build machine):
each image is one of scikit-learn's 1,797 bundled handwritten digits (8x8, 43 writers), drawn
at MNIST's 20x20 digit size, then rotated, slanted, stretched, elastically bent and thickened
or thinned at random, and centred on its centre of mass in a 28x28 frame as MNIST's digits
are. It has MNIST's shape, classes, stroke polarity and kind of variation; it is not MNIST,
and the same source digit appears distorted in many images (so in every split).
"""
from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

SIZE, DIGIT_BOX = 28, 20  # MNIST: the digit fits a 20x20 box, centred by mass in 28x28
TRAIN, TEST = 60_000, 10_000


def distorted_digit(source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One 28x28 uint8 image from one 20x20 float source digit (0..1)."""
    from scipy import ndimage

    canvas = np.zeros((SIZE, SIZE), np.float32)
    offset = (SIZE - DIGIT_BOX) // 2
    canvas[offset:offset + DIGIT_BOX, offset:offset + DIGIT_BOX] = source
    # rotation, slant and stretch about the centre (an output pixel samples matrix @ (pixel - centre))
    angle = np.deg2rad(rng.uniform(-15, 15))
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    slant = np.array([[1.0, 0.0], [rng.uniform(-0.3, 0.3), 1.0]])  # (row, col): col shifts with row
    stretch = np.diag(1.0 / rng.uniform(0.8, 1.1, size=2))
    matrix = rotate @ slant @ stretch
    centre = np.array([SIZE / 2 - 0.5] * 2)
    image = ndimage.affine_transform(canvas, matrix, offset=centre - matrix @ centre, order=1)
    # elastic bending: a smooth random displacement field (Simard et al. 2003, milder)
    rows, cols = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    dr, dc = (ndimage.gaussian_filter(rng.uniform(-1, 1, (SIZE, SIZE)), 4.0) * 12.0 for _ in range(2))
    image = ndimage.map_coordinates(image, [rows + dr, cols + dc], order=1)
    # pen width
    stroke = rng.integers(3)
    if stroke == 1:
        image = ndimage.grey_dilation(image, size=(2, 2))
    elif stroke == 2:
        image = ndimage.grey_erosion(image, size=(2, 1)) * 0.5 + image * 0.5
    # centre of mass to the frame's centre, as MNIST's digits are
    mass = ndimage.center_of_mass(image)
    if np.all(np.isfinite(mass)):
        image = ndimage.shift(image, (centre[0] - mass[0], centre[1] - mass[1]), order=1)
    return np.clip(image * 1.5 * 255.0, 0, 255).astype(np.uint8)  # MNIST's strokes saturate


def source_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits at MNIST's digit size: float (N, 20, 20) in 0..1, and labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(d).resize((DIGIT_BOX, DIGIT_BOX), Image.BICUBIC)) for d in small])
    return big.astype(np.float32) / 255.0, bunch.target.astype(np.uint8)


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's IDX files: big-endian magic number and dimensions, then the raw uint8 values."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(images), SIZE, SIZE) + images.tobytes())
    with open(folder / f"{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + np.asarray(labels, np.uint8).tobytes())


def make(root: Path, train: int = TRAIN, test: int = TEST, seed: int = 0) -> Path:
    """Write root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte; returns the raw folder."""
    rng = np.random.default_rng(seed)
    sources, source_labels = source_digits()
    picks = rng.integers(len(sources), size=train + test)
    images = np.stack([distorted_digit(sources[i], rng) for i in picks])
    labels = source_labels[picks]
    raw = root / "MNIST" / "raw"
    write_idx(raw, "train", images[:train], labels[:train])
    write_idx(raw, "t10k", images[train:], labels[train:])
    return raw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="folder to write MNIST/raw/ into (data_prep's --data-dir)")
    p.add_argument("--train", type=int, default=TRAIN, help=f"training images (default {TRAIN:,}, as MNIST)")
    p.add_argument("--test", type=int, default=TEST, help=f"test images (default {TEST:,}, as MNIST)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    raw = make(args.root, args.train, args.test, args.seed)
    print(f"wrote {args.train:,} + {args.test:,} MNIST-shaped images to {raw}")


if __name__ == "__main__":
    main()
