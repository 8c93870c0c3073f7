"""Architectures, each built from the settings a recipe (app/recipe) records, so a saved recipe
rebuilds its model exactly: `build_model(recipe)`, or `build(arch, shape, classes, settings)`
where there is no recipe yet (a training run's model, before it is logged).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from app.errors import UserError
from app.models import cnn, convnet, mlp, resnet, zoo
from app.recipe import InputSpec, Recipe
from app.recipe.config import TrainConfig, check_model_settings, out_of_range


class _ZooArchitecture:
    """One of torchvision's classifiers (app/models/zoo.py), with the interface of a module here."""

    def __init__(self, arch: str):
        self.arch = arch

    def build(self, input_shape, num_classes, pretrained):
        return zoo.build(self.arch, input_shape, num_classes, pretrained)

    def load_pretrained(self, model) -> None:
        zoo.load_pretrained(self.arch, model)

    def fetch_pretrained(self) -> None:
        zoo.fetch_pretrained(self.arch)


# Each one's build(input_shape, num_classes, **settings) takes the settings TrainConfig marks
# with its arch (app/recipe/config.py): the one list of them.
ARCHITECTURES = {"convnet": convnet, "cnn": cnn, "mlp": mlp, "resnet": resnet, **{a: _ZooArchitecture(a) for a in zoo.ARCHITECTURES}}


# Bounds a recipe's sizes are checked against before torch allocates anything: a recipe comes
# from flags, a sweep or a stored artifact someone else logged, and `dense=10**9` would ask
# torch for terabytes (a negative size, for a traceback).
MAX_SIDE = 8192  # pixels of an input side
MAX_CHANNELS = 4
MAX_CLASSES = 100_000
MAX_PARAMETERS = 1_000_000_000  # 4 GB of fp32 weights


def check_sizes(arch: str, shape, classes, settings: dict) -> None:
    """A UserError naming the first size that no model could have."""
    _module(arch)
    shape = list(shape) if isinstance(shape, (list, tuple)) else shape
    if not (isinstance(shape, list) and len(shape) == 3 and all(_whole(d) for d in shape)
            and 1 <= shape[0] <= MAX_CHANNELS and all(1 <= d <= MAX_SIDE for d in shape[1:])):
        _refuse(f"input shape {shape!r}", f"[channels 1..{MAX_CHANNELS}, height, width 1..{MAX_SIDE}]")
    if not (_whole(classes) and 2 <= classes <= MAX_CLASSES):
        _refuse(f"class count {classes!r}", f"a whole number in 2..{MAX_CLASSES}")
    check_model_settings(arch, settings)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse(what: str, expected: str):
    raise out_of_range(what, expected)


def build_model(recipe: Recipe):
    """The recipe's model, with fresh weights."""
    return build(recipe.arch, recipe.input.shape, recipe.num_classes, recipe.config.model)


def build(arch: str, shape, classes: int, settings: dict):
    """`arch`'s model for inputs of `shape` (channels, height, width) and `classes` classes."""
    check_sizes(arch, shape, classes, settings)
    # Sized first on PyTorch's meta device, which allocates nothing: sizes that are each in
    # range can still multiply into more weights than any machine holds.
    with torch.device("meta"):
        count = sum(p.numel() for p in _build(arch, shape, classes, settings).parameters())
    if count > MAX_PARAMETERS:
        _refuse(f"size ({count:,} weights)", f"at most {MAX_PARAMETERS:,}: smaller layers or a smaller --image-size")
    return _build(arch, shape, classes, settings)


def _build(arch: str, shape, classes: int, settings: dict):
    try:
        return _module(arch).build(list(shape), int(classes), **settings)
    except (KeyError, TypeError) as err:
        raise UserError(f"the model recipe does not fit architecture {arch!r} ({err}).") from err


def load_pretrained(config: TrainConfig, model) -> None:
    """Training's starting weights, where the architecture offers them and the configuration asks
    (resnet --pretrained); a model rebuilt from a saved recipe loads its own weights instead."""
    module = _module(config.arch)
    if config.model.get("pretrained") and hasattr(module, "load_pretrained"):
        module.load_pretrained(model)


def fetch_pretrained(arch: str) -> None:
    """Before any run: the architecture's pretrained weights are in torch's cache or can be
    downloaded; otherwise a UserError with the fix, and nothing is logged."""
    _module(arch).fetch_pretrained()


def model_input(arch: str, data: InputSpec) -> InputSpec:
    """The recipe's input for `arch`: the dataset's own normalisation, or for torchvision's
    pretrained classifiers none (they normalise with their weights' mean and std inside, at their
    input size: `model_input`, recorded for whoever reads the recipe)."""
    if arch not in zoo.ARCHITECTURES:
        return data
    return replace(data, mean=(0.0,) * data.channels, std=(1.0,) * data.channels,
                   model_input=zoo.input_transform(arch))


def _module(arch):
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[arch]
