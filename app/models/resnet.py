"""ResNet-18 from torchvision.models, adapted to small inputs (CIFAR-style): a 3x3 stride-1
first convolution for any number of channels and no initial max-pool, so a 32x32 image keeps
its detail into the residual stages; the classifier has the recipe's classes.

`pretrained` starts training from torchvision's ImageNet weights (every layer but the first
convolution and the classifier, whose shapes differ). They are fetched once by torchvision
(network needed the first time, then its cache), and only for training: a saved model
rebuilds from its recipe with weights=None and loads its own state_dict.
"""
from __future__ import annotations

from torch import nn


def build(input_shape: list[int], num_classes: int, pretrained: bool) -> nn.Module:
    from torchvision.models import resnet18

    channels = input_shape[0]
    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def load_pretrained(model: nn.Module) -> None:
    """Copy torchvision's ImageNet weights into `model`, except its first convolution and classifier."""
    state = fetch_pretrained()
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)


def fetch_pretrained() -> dict:
    """torchvision's ImageNet state_dict of ResNet-18 (the zoo's resnet18 weights), from torch's
    cache or downloaded into it."""
    from app.models import zoo

    return zoo.fetch_pretrained("resnet18")
