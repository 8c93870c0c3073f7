"""The training split's per-channel mean and std, which data_prep records in the dataset
artifact's metadata and the model's recipe keeps (app/recipe: InputSpec.from_dataset_metadata), so
train, evaluate, predict and serve normalise alike."""
from __future__ import annotations

import numpy as np


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, H, W[, C]) in [0, 1] units, rounded to 6
    places (so the JSON and the digest are stable)."""
    stats = ChannelStats()
    stats.add(images)
    return stats.result()


class ChannelStats:
    """channel_stats over images that arrive in chunks (a split written shard by shard): each
    channel's histogram of the 256 values, so the sums are exact integers whatever the order."""

    ROWS = 1024  # images counted at a time: bincount makes an 8-byte copy of what it counts

    def __init__(self):
        self.histograms: np.ndarray | None = None  # (channels, 256) int64

    def add(self, images: np.ndarray) -> None:
        channels = 1 if images.ndim == 3 else images.shape[3]
        if self.histograms is None:
            self.histograms = np.zeros((channels, 256), np.int64)
        for start in range(0, len(images), self.ROWS):
            pixels = np.asarray(images[start:start + self.ROWS]).reshape(-1, channels)
            for c in range(channels):
                self.histograms[c] += np.bincount(pixels[:, c], minlength=256)

    def result(self) -> tuple[list[float], list[float]]:
        means, stds = [], []
        for histogram in self.histograms.tolist() if self.histograms is not None else [[1] + [0] * 255]:
            count = sum(histogram)
            total = sum(v * n for v, n in enumerate(histogram))
            squares = sum(v * v * n for v, n in enumerate(histogram))
            variance = (count * squares - total * total) / (count * count)  # exact integers until this division
            means.append(round(total / count / 255.0, 6))
            stds.append(round(max(variance ** 0.5 / 255.0, 1e-6), 6))
        return means, stds
