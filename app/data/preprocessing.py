"""How a model sees images: size, channels and the training split's per-channel mean and std.

data_prep records these in the dataset artifact's metadata; train copies them into the model's
recipe; evaluate and predict read them back from the recipe. One definition, three scripts.
"""
from __future__ import annotations

import numpy as np


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, H, W[, C]) in [0, 1] units, rounded to 6
    places (so the JSON and the digest are stable), accumulated in float64 per channel."""
    pixels = images.reshape(-1, 1 if images.ndim == 3 else images.shape[3])
    mean = pixels.mean(axis=0, dtype=np.float64) / 255.0
    std = pixels.std(axis=0, dtype=np.float64) / 255.0
    return [round(float(m), 6) for m in mean], [round(max(float(s), 1e-6), 6) for s in std]


def from_dataset_metadata(metadata: dict) -> dict:
    """The recipe's preprocessing from a dataset artifact's metadata. Datasets logged before the
    channels were recorded are 28x28 greyscale digits-like sets, seen without normalisation."""
    shape = list(metadata["image_shape"])
    channels = int(metadata.get("channels", shape[2] if len(shape) == 3 else 1))
    return {
        "size": shape[:2],
        "channels": channels,
        "mean": metadata.get("mean", [0.0] * channels),
        "std": metadata.get("std", [1.0] * channels),
        "resize": metadata.get("resize"),
        "invert_light_background": bool(metadata.get("light_on_dark", channels == 1)),
    }


def of_recipe(recipe: dict) -> dict:
    """A model recipe's preprocessing; recipes from before it existed: greyscale, no normalisation,
    light scans inverted (what predict.py did for them)."""
    if "preprocessing" in recipe:
        return recipe["preprocessing"]
    channels, height, width = recipe["input_shape"]
    return {"size": [height, width], "channels": channels, "mean": [0.0] * channels, "std": [1.0] * channels,
            "resize": None, "invert_light_background": channels == 1}


def input_shape(preprocessing: dict) -> list[int]:
    """(C, H, W), the models' input."""
    return [int(preprocessing["channels"]), *map(int, preprocessing["size"])]
