"""Class probabilities for uint8 images: the one inference path of evaluate.py and predict.py."""
from __future__ import annotations

import numpy as np
import torch

from app.data.shards import ImagesView
from app.recipe import Recipe
from app.training import engine


CHUNK = 8 * engine.EVAL_BATCH  # images brought to the device as float at a time


def probabilities(model: torch.nn.Module, images, device: torch.device, recipe: Recipe, workers: int = 0) -> np.ndarray:
    """uint8 (N, H, W[, C]) -> float32 (N, classes), normalised as the recipe says, in large
    inference-mode batches on the device; `CHUNK` images at a time, so a split larger than memory
    is read once and never held as float whole. `images`: an array, or a split's ImagesView
    (app/data/shards.py), which `workers` DataLoader processes read (and decode) when given."""
    model = engine.prepare(model, device)
    parts = []
    for chunk in _chunks(images, workers):
        data = engine.to_tensors(chunk, np.zeros(len(chunk), np.int64), device, recipe.input)
        parts.append(torch.softmax(engine.predict_logits(model, data), dim=1).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, recipe.num_classes), np.float32)


def _chunks(images, workers: int):
    if workers and isinstance(images, ImagesView):
        from app.training.streaming import read_in_order

        yield from read_in_order(images, engine.EVAL_BATCH, workers)
        return
    for start in range(0, len(images), CHUNK):
        yield np.array(images[start:start + CHUNK])  # a writable copy (torch warns on a read-only map)
