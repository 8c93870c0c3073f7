"""Class probabilities for uint8 image batches from a model artifact: through onnxruntime when
the model has an ONNX export, else through torch (app/inference.py). Both take the images as
app/inference.to_model_input makes them (predict.py's files, the server's uploads)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app.models.files import load_model
from app.recipe import Recipe


class Predictor:
    def __init__(self, model_folder: Path, onnx_folder: Path | None = None, device: str = "cpu"):
        self.recipe = Recipe.load(model_folder)
        self.class_names = list(self.recipe.class_names)
        if onnx_folder is not None:
            from app.serving.onnx_export import INPUT, onnx_session

            self.engine, self._session, self._input = "onnxruntime", onnx_session(onnx_folder), INPUT
        else:
            import torch

            self.engine, self._device = "torch", torch.device(device)
            self._model, _ = load_model(model_folder, self._device)

    def probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, H, W[, C]) of the recipe's size -> float32 (N, classes), `batch_size` at a time."""
        if self.engine == "torch":
            from app.inference import probabilities

            return np.concatenate([probabilities(self._model, images[i:i + batch_size], self._device, self.recipe)
                                   for i in range(0, len(images), batch_size)])
        return np.concatenate([self._session.run(None, {self._input: np.ascontiguousarray(images[i:i + batch_size])})[0]
                               for i in range(0, len(images), batch_size)])

    def top(self, probs: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        """The k likeliest classes of each row, with their probabilities."""
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.class_names[j], round(float(row[j]), 5)) for j in best] for row, best in zip(probs, order)]
