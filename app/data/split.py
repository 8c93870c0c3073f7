"""Stratified sampling and the train/validation/test split, plus the leakage check."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from app.data.sources import RawDataset
from app.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    images: dict[str, np.ndarray]  # split name -> uint8 (N, H, W)
    labels: dict[str, np.ndarray]  # split name -> int64 (N,)
    class_names: list[str]

    def sizes(self) -> dict[str, int]:
        return {s: int(len(self.labels[s])) for s in SPLITS}

    def class_counts(self) -> dict[str, list[int]]:
        n = len(self.class_names)
        return {s: np.bincount(self.labels[s], minlength=n).tolist() for s in SPLITS}


def check_sizes(sizes: list[int]) -> tuple[int, int, int]:
    if len(sizes) != 3 or any(s <= 0 for s in sizes) or sum(sizes) != 100:
        raise UserError(
            f"--train_val_test_size must be three positive integers summing to 100 "
            f"(got {' '.join(map(str, sizes))}, sum {sum(sizes)}); e.g. 70 20 10."
        )
    return sizes[0], sizes[1], sizes[2]


def stratified_split(raw: RawDataset, fraction: float, sizes: tuple[int, int, int], seed: int) -> Split:
    """Sample `fraction` percent of the set per class, then split it by `sizes` per class."""
    # Imported here: scikit-learn costs 1.3 s, and training only reads splits (via Split).
    from sklearn.model_selection import train_test_split

    images, labels = raw.images, raw.labels
    check_per_class(labels, raw.class_names, fraction, sizes)
    if fraction < 100:
        keep = int(round(len(labels) * fraction / 100))
        try:
            _, images, _, labels = train_test_split(images, labels, test_size=keep, stratify=labels, random_state=seed)
        except ValueError as err:
            raise UserError(f"--fraction {fraction} leaves too few images per class to stratify ({err}).") from err
    train_pct, val_pct, test_pct = sizes
    try:
        train_x, rest_x, train_y, rest_y = train_test_split(
            images, labels, train_size=train_pct / 100, stratify=labels, random_state=seed
        )
        val_x, test_x, val_y, test_y = train_test_split(
            rest_x, rest_y, train_size=val_pct / (val_pct + test_pct), stratify=rest_y, random_state=seed
        )
    except ValueError as err:
        raise UserError(f"the sample is too small to split {sizes} per class ({err}); raise --fraction.") from err
    return Split(
        images={"train": train_x, "val": val_x, "test": test_x},
        labels={"train": train_y, "val": val_y, "test": test_y},
        class_names=raw.class_names,
    )


def check_per_class(labels: np.ndarray, class_names: list[str], fraction: float, sizes: tuple[int, int, int]) -> None:
    """Every class needs enough images for one in its smallest split after sampling; otherwise
    stratification fails or leaves a split without the class. Names the classes and the fix."""
    needed = max(3, math.ceil(100 / min(sizes)))
    counts = np.bincount(labels, minlength=len(class_names))
    short = [(class_names[i], int(n)) for i, n in enumerate(counts) if n * fraction / 100 < needed]
    if short:
        listed = ", ".join(f"{name} ({n})" for name, n in short[:10]) + (" ..." if len(short) > 10 else "")
        sampled = f" of which --fraction {fraction:g}% samples" if fraction < 100 else ""
        raise UserError(
            f"{len(short)} class(es) have too few images to stratify a {'/'.join(map(str, sizes))} split: "
            f"{listed}{sampled}; each class needs at least {needed} after sampling. Add images to those classes, "
            "remove their folders, raise --fraction or change --train_val_test_size."
        )


def cross_split_duplicates(split: Split) -> int:
    """Images of val or test that also appear byte-for-byte in an earlier split (leakage)."""
    seen: set[bytes] = set()
    duplicates = 0
    for name in SPLITS:
        hashes = [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in split.images[name]]
        duplicates += sum(h in seen for h in hashes)
        seen.update(hashes)
    return duplicates
