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
    chosen = split_indices(raw.labels, raw.class_names, fraction, sizes, seed)
    return Split(images={s: raw.images[chosen[s]] for s in SPLITS}, labels={s: raw.labels[chosen[s]] for s in SPLITS},
                 class_names=raw.class_names)


def split_indices(labels: np.ndarray, class_names: list[str], fraction: float, sizes: tuple[int, int, int],
                  seed: int) -> dict[str, np.ndarray]:
    """The positions of each split's images among `labels`: the sample and split of stratified_split,
    decided from the labels alone, so a folder too large for memory is split before any image is
    decoded. (scikit-learn's shuffle depends only on the labels and the seed, so splitting the
    positions and splitting the images give the same split.)"""
    # Imported here: scikit-learn costs 1.3 s, and training only reads splits (via Split).
    from sklearn.model_selection import train_test_split

    check_per_class(labels, class_names, fraction, sizes)
    positions = np.arange(len(labels))
    if fraction < 100:
        keep = int(round(len(labels) * fraction / 100))
        try:
            _, positions = train_test_split(positions, test_size=keep, stratify=labels, random_state=seed)
        except ValueError as err:
            raise UserError(f"--fraction {fraction} leaves too few images per class to stratify ({err}).") from err
    train_pct, val_pct, test_pct = sizes
    try:
        train, rest = train_test_split(positions, train_size=train_pct / 100, stratify=labels[positions],
                                       random_state=seed)
        val, test = train_test_split(rest, train_size=val_pct / (val_pct + test_pct), stratify=labels[rest],
                                     random_state=seed)
    except ValueError as err:
        raise UserError(f"the sample is too small to split {sizes} per class ({err}); raise --fraction.") from err
    return {"train": train, "val": val, "test": test}


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


FEW_TO_JUDGE = 10  # images of a class in val or test below which its per-class figures move in big steps
IMBALANCED = 3.0  # largest class / smallest class from which data_prep says so


def class_balance(counts: dict[str, list[int]], class_names: list[str]) -> dict:
    """What data_prep records about the classes' sizes: per-class totals, the imbalance ratio
    (largest / smallest class) and the classes with fewer than FEW_TO_JUDGE images in val or test,
    where one image moves that class's accuracy by more than 10 points."""
    totals = [sum(counts[s][i] for s in SPLITS) for i in range(len(class_names))]
    few = {class_names[i]: {s: counts[s][i] for s in ("val", "test") if counts[s][i] < FEW_TO_JUDGE}
           for i in range(len(class_names))}
    return {"per_class": dict(zip(class_names, totals)),
            "imbalance_ratio": round(max(totals) / max(1, min(totals)), 2),
            "largest": class_names[int(np.argmax(totals))], "smallest": class_names[int(np.argmin(totals))],
            "few_to_judge": {name: splits for name, splits in few.items() if splits}}


def report_balance(balance: dict) -> None:
    import sys

    if balance["imbalance_ratio"] >= IMBALANCED:
        per_class = balance["per_class"]
        print(f"warning: the classes are imbalanced: {balance['largest']} has {per_class[balance['largest']]} images, "
              f"{balance['smallest']} {per_class[balance['smallest']]} (ratio {balance['imbalance_ratio']:g}). "
              "Accuracy favours the large classes; evaluate.py's macro F1 and per-class table do not. Add images to "
              "the small classes, or --fraction less of the large ones by hand.", file=sys.stderr)
    few = balance["few_to_judge"]
    if few:
        shown = ", ".join(f"{name} ({', '.join(f'{n} {s}' for s, n in splits.items())})"
                          for name, splits in list(few.items())[:8]) + (" ..." if len(few) > 8 else "")
        print(f"warning: {len(few)} class(es) have fewer than {FEW_TO_JUDGE} images in val or test: {shown}. One "
              "image moves such a class's accuracy by over 10 points; add images to them or give val and test "
              "larger shares (--train_val_test_size).", file=sys.stderr)


def cross_split_duplicates(split: Split) -> int:
    """Images of val or test that also appear byte-for-byte in an earlier split (leakage)."""
    counter = DuplicateCounter()
    for name in SPLITS:
        counter.add(name, split.images[name])
    return counter.duplicates


class DuplicateCounter:
    """cross_split_duplicates over images that arrive in chunks, split after split (train, val, test):
    an image counts when it appeared in an earlier split; 16 bytes of hash per image are kept."""

    def __init__(self):
        self.duplicates = 0
        self._seen: set[bytes] = set()  # hashes of the splits before the current one
        self._current: tuple[str, set[bytes]] = ("", set())

    def add(self, split: str, images) -> None:
        if split != self._current[0]:
            self._seen |= self._current[1]
            self._current = (split, set())
        hashes = [hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16).digest() for img in images]
        self.duplicates += sum(h in self._seen for h in hashes)
        self._current[1].update(hashes)
