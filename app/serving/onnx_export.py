"""A model's ONNX export: the uint8 images as the dataset stores them in, class probabilities out.

The graph holds the preprocessing (uint8 -> [0, 1], channels first, the recipe's per-channel
mean and std) and the softmax, so a user outside this repo feeds it images of the recipe's size
and nothing else; the recipe travels beside it (recipe.json) for the class names and the size.
Exported with torch.onnx's default exporter (torch.export-based, onnxscript), batch dynamic.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from app.cli import command
from app.errors import UserError, summary
from app.recipe import RECIPE_FILE, Recipe

ONNX_FILE = "model.onnx"
INPUT, OUTPUT = "images", "probabilities"


class WithPreprocessing(nn.Module):
    """uint8 (N, H, W) or (N, H, W, C) -> probabilities (N, classes), as inference.probabilities."""

    def __init__(self, model: nn.Module, recipe: Recipe):
        super().__init__()
        spec = recipe.input
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, spec.channels, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, spec.channels, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
        x = (x.float() / 255.0 - self.mean) / self.std
        return torch.softmax(self.model(x), dim=1)


def example_batch(recipe: Recipe, n: int = 2) -> np.ndarray:
    """Images as the export takes them: uint8 (N, H, W), or (N, H, W, C) in colour."""
    spec = recipe.input
    shape = (n, *spec.size) if spec.channels == 1 else (n, *spec.size, spec.channels)
    return np.zeros(shape, dtype=np.uint8)


def export_onnx(model: nn.Module, recipe: Recipe, folder: Path) -> dict[str, Path]:
    """model.onnx (+ recipe.json) in `folder`; the files of an `onnx` artifact."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapped = WithPreprocessing(model.cpu(), recipe).eval()
    example = torch.from_numpy(example_batch(recipe))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each of its passes
            program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
            program.save(str(folder / ONNX_FILE))
    except Exception as err:  # noqa: BLE001 - the exporter's failures have no common type
        raise UserError(f"torch.onnx could not export the {recipe.arch} model ({summary(err)}); the model "
                        "itself is unaffected and still serves through torch.") from err
    return {ONNX_FILE: folder / ONNX_FILE, RECIPE_FILE: recipe.save(folder)}


def onnx_session(folder: Path):
    """An onnxruntime session on the CPU for an exported model."""
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own untyped failures
        raise UserError(f"onnxruntime could not load {folder / ONNX_FILE} ({summary(err)}); export it again "
                        f"with `{command('registry')} export REF`.") from err


def log_export(run, model_version, model: nn.Module, recipe: Recipe):
    """Export the model and log it as `<collection>-onnx` (type onnx) in `run`, which has used
    `model_version`: lineage shows model -> export run -> export. Returns the logged version."""
    import tempfile

    from app import names

    with tempfile.TemporaryDirectory() as tmp:
        files = export_onnx(model, recipe, Path(tmp))
        return run.log_artifact(names.onnx_artifact(model_version.name), names.ONNX_TYPE, files, {
            "model": model_version.ref, "model_digest": model_version.digest, "class_names": list(recipe.class_names),
            "input": {"name": INPUT, "dtype": "uint8", "shape": ["batch", *example_batch(recipe).shape[1:]]},
            "output": {"name": OUTPUT, "meaning": "class probabilities (softmax), in class_names order"},
            "preprocessing": recipe.input.to_dict()})
