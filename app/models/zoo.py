"""torchvision's ImageNet classifiers for transfer learning: resnet18, resnet50, efficientnet_b0,
mobilenet_v3_large and convnext_tiny, each fed as its weights expect.

The model takes the dataset's images as they are stored, scaled to [0, 1] and not normalised
(the recipe's preprocessing is the identity for these architectures): greyscale is replicated
to 3 channels, the image is resized to the weights' own input size and normalised with the
weights' own mean and std (`weights.transforms()`), all inside the module, so evaluate,
predict and the ONNX export see the same model. The ImageNet classifier is replaced by one for
the recipe's classes. `pretrained` loads the weights once for training (torchvision's download
into torch's cache, or a file already there); a saved model rebuilds with weights=None and
loads its own state_dict.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from app.errors import UserError, summary

from app.names import PRETRAINED_ARCHITECTURES as ARCHITECTURES  # noqa: F401 - this module's, named once


def weights_of(arch: str):
    """The torchvision weights enum's default (ImageNet) entry for `arch`: public API only."""
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def input_transform(arch: str) -> dict:
    """What the weights were trained on (`weights.transforms()`): the recipe records it."""
    transforms = weights_of(arch).transforms()
    crop = list(transforms.crop_size)
    return {"weights": str(weights_of(arch)), "size": crop if len(crop) == 2 else crop * 2,
            "mean": list(transforms.mean), "std": list(transforms.std)}


class Pretrained(nn.Module):
    """A torchvision classifier behind the input adaptation its weights need."""

    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        from torchvision.models import get_model

        transform = input_transform(arch)
        self.size = tuple(transform["size"])
        self.register_buffer("mean", torch.tensor(transform["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(transform["std"]).view(1, 3, 1, 1), persistent=False)
        self.net = get_model(arch, weights=None)
        replace_head(self.net, num_classes)

    def head(self) -> nn.Linear:
        """The new classifier (replace_head's)."""
        return self.net.fc if isinstance(getattr(self.net, "fc", None), nn.Linear) else self.net.classifier[-1]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the new classifier's: what the pretrained weights set."""
        new = {id(p) for p in self.head().parameters()}
        return [p for p in self.parameters() if id(p) not in new]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:  # greyscale: the same image in each of the weights' 3 channels
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=False)
        return self.net((x - self.mean) / self.std)


def replace_head(net: nn.Module, num_classes: int) -> None:
    """The last Linear layer (resnet's fc; the others' classifier[-1]) replaced for the classes."""
    if isinstance(getattr(net, "fc", None), nn.Linear):
        net.fc = nn.Linear(net.fc.in_features, num_classes)
        return
    classifier = net.classifier
    last = len(classifier) - 1
    classifier[last] = nn.Linear(classifier[last].in_features, num_classes)


def build(arch: str, input_shape: list[int], num_classes: int, pretrained: bool) -> nn.Module:
    if input_shape[0] not in (1, 3):
        raise UserError(f"--arch {arch} takes greyscale or colour images, not {input_shape[0]} channels.")
    return Pretrained(arch, num_classes)


def load_pretrained(arch: str, model: Pretrained) -> None:
    """Copy the ImageNet weights into `model`, all but the replaced classifier."""
    state = fetch_pretrained(arch)
    own = model.net.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.net.load_state_dict(kept, strict=False)


def fetch_pretrained(arch: str) -> dict:
    """The weights' state_dict, from torch's cache or downloaded into it."""
    weights = weights_of(arch)
    try:
        return weights.get_state_dict(progress=False)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        raise UserError(
            f"--pretrained needs torchvision's ImageNet weights {weights} ({weights.url}), which could not be fetched "
            f"({summary(err)}). Without network, put the file in torch's cache (torch.hub.get_dir()/checkpoints, "
            "or $TORCH_HOME) or train without --pretrained."
        ) from err
