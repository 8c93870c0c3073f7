"""The PyTorch quickstart's MLP: flatten -> 512 -> ReLU -> 512 -> ReLU -> classes."""
from __future__ import annotations

import math

from torch import nn


def build(input_shape: list[int], num_classes: int, hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
