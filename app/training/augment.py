"""Augmentation on the device, a whole batch at a time: random crop with padding and an
optional horizontal flip. Labels never change; evaluation never augments (only engine.fit's
training steps call this).

Chosen per data set (`--augment`): "none" for digits and MNIST-like sets (a shifted or mirrored
digit is another digit, or none), "crop-flip" for photos and shapes, "crop" where mirroring
changes the meaning (text, road signs with arrows).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def padding_for(height: int, width: int) -> int:
    """An eighth of the smaller side (4 pixels at 32x32, CIFAR's customary crop)."""
    return max(1, min(height, width) // 8)


def augment_batch(images: torch.Tensor, kind: str) -> torch.Tensor:
    """(N, C, H, W) -> a new (N, C, H, W): each image shifted by up to `padding_for` pixels
    (zero padding, which after normalisation is the training set's mean colour) and, for
    crop-flip, mirrored left-right with probability 1/2. Draws from torch's global RNG, which
    engine.seed_everything seeds."""
    if kind == "none":
        return images
    n, _, height, width = images.shape
    pad = padding_for(height, width)
    device = images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = torch.randint(0, 2 * pad + 1, (n, 1), device=device) + torch.arange(height, device=device)
    cols = torch.randint(0, 2 * pad + 1, (n, 1), device=device) + torch.arange(width, device=device)
    if kind == "crop-flip":
        flip = torch.rand(n, 1, device=device) < 0.5
        cols = torch.where(flip, cols.flip(1), cols)
    batch = torch.arange(n, device=device)[:, None, None]
    # advanced indices around a slice put their dimensions first: (N, H, W, C)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
