"""Class probabilities for uint8 images: the one inference path of evaluate.py and predict.py."""
from __future__ import annotations

import numpy as np
import torch

from app.data.preprocessing import of_recipe
from app.training import engine


def probabilities(model: torch.nn.Module, images: np.ndarray, device: torch.device, recipe: dict) -> np.ndarray:
    """uint8 (N, H, W[, C]) -> float32 (N, classes), normalised as the recipe says, in large
    inference-mode batches on the device."""
    model = engine.prepare(model, device)
    data = engine.to_tensors(images, np.zeros(len(images), np.int64), device, of_recipe(recipe))
    return torch.softmax(engine.predict_logits(model, data), dim=1).float().cpu().numpy()
