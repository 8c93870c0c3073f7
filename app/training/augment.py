"""Augmentation on the device, a whole batch at a time: random crop with padding, an optional
horizontal flip and, for colour sets that hold greyscale images too, an image now and then in
greyscale. Labels never change; evaluation never augments (only engine.fit's training steps call
this).

Chosen per data set (`--augment`): "none" for digits and MNIST-like sets (a shifted or mirrored
digit is another digit, or none), "crop-flip" for photos and shapes, "crop-flip-grey" for those
whose folder mixes greyscale files among colour ones (data_prep records it: a model trained on
colour learns colour cues a greyscale image lacks), "crop" where mirroring changes the meaning
(text, road signs with arrows).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from app.recipe import InputSpec

GREY_SHARE = 1 / 8  # crop-flip-grey: the share of a batch's colour images turned greyscale
LUMA = (0.299, 0.587, 0.114)  # Pillow's RGB -> "L" weights: a greyscale file as data_prep reads it


def padding_for(height: int, width: int) -> int:
    """An eighth of the smaller side (4 pixels at 32x32, CIFAR's customary crop)."""
    return max(1, min(height, width) // 8)


def augment_batch(images: torch.Tensor, kind: str, spec: InputSpec | None = None) -> torch.Tensor:
    """(N, C, H, W) -> a new (N, C, H, W): each image shifted by up to `padding_for` pixels
    (zero padding, which after normalisation is the training set's mean colour) and, for
    crop-flip, mirrored left-right with probability 1/2; for crop-flip-grey, also turned greyscale
    with probability GREY_SHARE (`spec`: the normalisation the images had). Draws from torch's
    global RNG, which engine.seed_everything seeds."""
    if kind == "none":
        return images
    n, _, height, width = images.shape
    pad = padding_for(height, width)
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = torch.randint(0, 2 * pad + 1, (n, 1), device=device) + torch.arange(height, device=device)
    cols = torch.randint(0, 2 * pad + 1, (n, 1), device=device) + torch.arange(width, device=device)
    if kind in ("crop-flip", "crop-flip-grey"):
        flip = torch.rand(n, 1, device=device) < 0.5
        cols = torch.where(flip, cols.flip(1), cols)
    batch = torch.arange(n, device=device)[:, None, None]
    # advanced indices around a slice put their dimensions first: (N, H, W, C)
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    if kind == "crop-flip-grey" and out.shape[1] == 3:
        out = greyscale_some(out, spec)
    return out


@functools.lru_cache(maxsize=8)
def grey_constants(mean: tuple, std: tuple, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(mean, std, luma) as (1, 3, 1, 1) tensors on the device, made once per normalisation rather
    than copied to the device at every training step."""
    return tuple(torch.tensor(v, dtype=dtype, device=device).view(1, 3, 1, 1) for v in (mean, std, LUMA))


def greyscale_some(images: torch.Tensor, spec: InputSpec | None) -> torch.Tensor:
    """GREY_SHARE of the (N, 3, H, W) normalised colour images as data_prep stores a greyscale file
    of the set (each channel the pixels' luma), normalised again by the set's per-channel mean and std."""
    mean, std, luma = grey_constants(tuple(spec.mean) if spec is not None else (0.0,) * 3,
                                     tuple(spec.std) if spec is not None else (1.0,) * 3, images.dtype, images.device)
    grey = ((images * std + mean) * luma).sum(1, keepdim=True)  # in [0, 1] pixel units
    chosen = torch.rand(len(images), device=images.device) < GREY_SHARE
    return torch.where(chosen.view(-1, 1, 1, 1), (grey - mean) / std, images)
