"""Architectures, each built from a plain recipe so a saved recipe rebuilds it exactly.

A recipe is a dict: {"arch": "cnn", "input_shape": [1, 28, 28], "num_classes": 10,
"model": {...the architecture's hyperparameters...}}.
"""
from __future__ import annotations

import torch

from app.errors import UserError
from app.models import cnn, mlp, resnet
from app.training.config import check_model_settings, out_of_range

# Each module's build(input_shape, num_classes, **settings) takes the settings TrainConfig
# marks with its arch (app/training/config.py): the one list of them.
ARCHITECTURES = {"cnn": cnn, "mlp": mlp, "resnet": resnet}


# Bounds a recipe's sizes are checked against before torch allocates anything: a recipe comes
# from flags, a sweep or a stored artifact someone else logged, and `dense=10**9` would ask
# torch for terabytes (a negative size, for a traceback).
MAX_SIDE = 8192  # pixels of an input side
MAX_CHANNELS = 4
MAX_CLASSES = 100_000
MAX_PARAMETERS = 1_000_000_000  # 4 GB of fp32 weights


def check_recipe(recipe: dict) -> None:
    """A UserError naming the first size of the recipe that no model could have."""
    _module(recipe.get("arch"))
    shape, classes, model = recipe.get("input_shape"), recipe.get("num_classes"), recipe.get("model")
    if not (isinstance(shape, list) and len(shape) == 3 and all(_whole(d) for d in shape)
            and 1 <= shape[0] <= MAX_CHANNELS and all(1 <= d <= MAX_SIDE for d in shape[1:])):
        _refuse(f"input_shape {shape!r}", f"[channels 1..{MAX_CHANNELS}, height, width 1..{MAX_SIDE}]")
    if not (_whole(classes) and 2 <= classes <= MAX_CLASSES):
        _refuse(f"num_classes {classes!r}", f"a whole number in 2..{MAX_CLASSES}")
    if not isinstance(model, dict):
        _refuse(f"model {model!r}", f"the {recipe['arch']} architecture's settings")
    check_model_settings(recipe["arch"], model)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse(what: str, expected: str):
    raise out_of_range(what, expected)


def build_model(recipe: dict):
    check_recipe(recipe)
    # Sized first on PyTorch's meta device, which allocates nothing: sizes that are each in
    # range can still multiply into more weights than any machine holds.
    with torch.device("meta"):
        count = sum(p.numel() for p in _build(recipe).parameters())
    if count > MAX_PARAMETERS:
        _refuse(f"size ({count:,} weights)", f"at most {MAX_PARAMETERS:,}: smaller layers or a smaller --image-size")
    return _build(recipe)


def _build(recipe: dict):
    try:
        return _module(recipe["arch"]).build(list(recipe["input_shape"]), int(recipe["num_classes"]), **recipe["model"])
    except (KeyError, TypeError) as err:
        raise UserError(f"the model recipe does not fit architecture {recipe['arch']!r} ({err}).") from err


def load_pretrained(recipe: dict, model) -> None:
    """Training's starting weights, where the architecture offers them and the recipe asks
    (resnet --pretrained); a model rebuilt from a saved recipe loads its own weights instead."""
    module = _module(recipe.get("arch"))
    if recipe["model"].get("pretrained") and hasattr(module, "load_pretrained"):
        module.load_pretrained(model)


def _module(arch):
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[arch]
