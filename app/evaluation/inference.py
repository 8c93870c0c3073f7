"""Class probabilities for uint8 images: the one inference path of evaluate.py and predict.py."""
from __future__ import annotations

import numpy as np
import torch

from app.data.preprocessing import of_recipe
from app.training import engine


CHUNK = 8 * engine.EVAL_BATCH  # images brought to the device as float at a time


def probabilities(model: torch.nn.Module, images: np.ndarray, device: torch.device, recipe: dict) -> np.ndarray:
    """uint8 (N, H, W[, C]) -> float32 (N, classes), normalised as the recipe says, in large
    inference-mode batches on the device; `CHUNK` images at a time, so a memory-mapped split
    larger than memory is read once and never held as float whole."""
    model = engine.prepare(model, device)
    parts = []
    for start in range(0, len(images), CHUNK):
        chunk = np.array(images[start:start + CHUNK])  # a writable copy (torch warns on a read-only map)
        data = engine.to_tensors(chunk, np.zeros(len(chunk), np.int64), device, of_recipe(recipe))
        parts.append(torch.softmax(engine.predict_logits(model, data), dim=1).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, int(recipe["num_classes"])), np.float32)
