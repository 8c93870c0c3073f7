"""Class probabilities for uint8 images: the one inference path of evaluate.py and predict.py."""
from __future__ import annotations

import numpy as np
import torch

from app.training import engine


def probabilities(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, classes), in large inference-mode batches on the device."""
    model = engine.prepare(model, device)
    data = engine.to_tensors(images, np.zeros(len(images), np.int64), device)
    return torch.softmax(engine.predict_logits(model, data), dim=1).float().cpu().numpy()
