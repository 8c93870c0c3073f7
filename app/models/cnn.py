"""The original keras project's CNN, rebuilt in PyTorch.

conv 32 5x5 same, ReLU -> max-pool 2 -> dropout_1 -> conv 64 5x5 same, ReLU -> max-pool 2
-> dropout_2 -> flatten (7x7x64 for 28x28) -> dense, ReLU -> dropout_3 -> classes.
"""
from __future__ import annotations

from torch import nn

# Hyperparameters of the architecture, with the defaults train.py uses.
DEFAULTS = {"dropout_1": 0.25, "dropout_2": 0.25, "dropout_3": 0.5, "dense": 128}


def build(input_shape: list[int], num_classes: int, dropout_1: float, dropout_2: float,
          dropout_3: float, dense: int) -> nn.Module:
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 32, kernel_size=5, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(dropout_1),
        nn.Conv2d(32, 64, kernel_size=5, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(dropout_2),
        nn.Flatten(),
        nn.Linear(64 * (height // 4) * (width // 4), dense),
        nn.ReLU(),
        nn.Dropout(dropout_3),
        nn.Linear(dense, num_classes),
    )
