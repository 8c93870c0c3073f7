"""Planted near-copies, for measuring the near-duplicate check (bench_near_duplicates.py and
tests/test_near_duplicates.py): each chosen image gets one copy that is resized 0.8-1.2x,
cropped by up to 5% of each side's length, brightened or darkened by up to 10%, JPEG re-encoded at
quality 60-95 and brought back to the set's size by data_prep's `--resize crop` (aspect kept,
scaled to cover, centre cropped)."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.data.near_duplicates import near_copy  # noqa: E402 - the copy data_prep's self-test plants too


def plant(images: np.ndarray, share: float = 0.05, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """The images with a near-copy of `share` of them appended; and the planted (original, copy)
    positions."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(images)), max(1, round(len(images) * share))))
    copies = np.stack([near_copy(images[i], rng) for i in chosen])
    planted = {(i, len(images) + k) for k, i in enumerate(chosen)}
    return np.concatenate([images, copies]), planted


def scores(found: set[tuple[int, int]], planted: set[tuple[int, int]]) -> tuple[float, float]:
    """(recall, precision) of found pairs (first < second) against the planted ones."""
    hits = len(found & planted)
    return hits / len(planted), (hits / len(found) if found else 1.0)
