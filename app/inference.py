"""A model's answer for images, the one way down for evaluate.py, predict.py and serve.py (and
training's validation): uint8 images -> the model's input (`to_model_input`: the recipe's size
and channels by data_prep's own resizing rule) -> float, normalised (`as_float`, the one
conversion, training's too) -> class probabilities (`probabilities`). Below evaluation, serving
and training; nothing here imports them.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from app.data import image_files
from app.data.shards import ImagesView
from app.recipe import InputSpec, Recipe

EVAL_BATCH = 1024  # images per forward pass: large is faster, memory is small at 28x28
CHUNK = 8 * EVAL_BATCH  # images brought to the device as float at a time


def to_model_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A uint8 image of any size (H, W) or (H, W, C) -> the model's size and channels, by the rule
    data_prep resized its images with (app/data/image_files.py). For digit-like models (light
    strokes on dark), a light background is inverted, as on a scan: before the fitting, so that a
    padded border stays black, as in training."""
    if spec.invert_light_background and image.mean() > 127:
        image = 255 - image
    return image_files.fit_array(image, spec.channels, spec.size, image_files.resize_rule(spec.resize))


def as_float(x: torch.Tensor, spec: InputSpec | None) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float (N, C, H, W) in [0, 1], normalised with the spec's
    per-channel mean and std: the one conversion, for inference, the split held in memory for
    training and streamed batches alike (same values)."""
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    # NCHW while still uint8, then float: one float copy at its peak, not two (a split of 20,000
    # 64x64 colour images peaked at 2.6 GB the other way round)
    x = x.contiguous().float().div_(255.0)
    if spec is not None and spec.normalises:
        mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x.sub_(mean).div_(std)
    return x


@torch.inference_mode()
def logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's outputs for a float batch, in evaluation mode, without autograd."""
    return model.eval()(images)


def probabilities(model: nn.Module, images, device: torch.device, recipe: Recipe, workers: int = 0) -> np.ndarray:
    """uint8 (N, H, W[, C]) -> float32 (N, classes), normalised as the recipe says, in large
    inference-mode batches on the device; `CHUNK` images at a time, so a split larger than memory
    is read once and never held as float whole. `images`: an array, or a split's ImagesView
    (app/data/shards.py), which `workers` DataLoader processes read (and decode) when given."""
    model = model.to(device)  # in the default layout: see training/engine.prepare
    parts = []
    for chunk in _chunks(images, workers):
        x = as_float(torch.from_numpy(np.ascontiguousarray(chunk)).to(device), recipe.input)
        out = torch.cat([logits(model, x[start:start + EVAL_BATCH]) for start in range(0, len(x), EVAL_BATCH)])
        parts.append(torch.softmax(out, dim=1).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, recipe.num_classes), np.float32)


def _chunks(images, workers: int):
    if workers and isinstance(images, ImagesView):
        from app.data.loading import read_in_order

        yield from read_in_order(images, EVAL_BATCH, workers)
        return
    for start in range(0, len(images), CHUNK):
        yield np.array(images[start:start + CHUNK])  # a writable copy (torch warns on a read-only map)
