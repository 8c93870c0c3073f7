"""The original keras project's CNN, rebuilt in PyTorch.

conv 32 5x5 same, ReLU -> max-pool 2 -> dropout_1 -> conv 64 5x5 same, ReLU -> max-pool 2
-> dropout_2 -> flatten (7x7x64 for 28x28) -> dense, ReLU -> dropout_3 -> classes.

Max-pooling is applied before the ReLU: relu(max(x)) equals max(relu(x)), gradients included,
and the ReLU then touches a quarter of the values. The layers come from `layers.py` (stock
torch.nn layers with faster CPU paths); the state_dict is that of the stock layers.
"""
from __future__ import annotations

from torch import nn

from app.models.layers import Dropout, InputConv2d, MaxPool2d


def build(input_shape: list[int], num_classes: int, dropout_1: float, dropout_2: float,
          dropout_3: float, dense: int) -> nn.Module:
    channels, height, width = input_shape
    first_conv = InputConv2d if channels == 1 else nn.Conv2d
    return nn.Sequential(
        first_conv(channels, 32, kernel_size=5, padding="same"),
        MaxPool2d(2),
        nn.ReLU(),
        Dropout(dropout_1),
        nn.Conv2d(32, 64, kernel_size=5, padding="same"),
        MaxPool2d(2),
        nn.ReLU(),
        Dropout(dropout_2),
        nn.Flatten(),
        nn.Linear(64 * (height // 4) * (width // 4), dense),
        nn.ReLU(),
        Dropout(dropout_3),
        nn.Linear(dense, num_classes),
    )
